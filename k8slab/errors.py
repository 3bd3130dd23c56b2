"""The one base class of every error labctl reports as a single line (exit 2).

It lives apart so the CLI can catch these without importing paramiko, jinja2 or the checks:
`labctl --help` stays fast.
"""


class LabctlError(Exception):
    """A problem the user can fix (topology, lab, SSH, bundle); the message is one line."""
