"""Jinja rendering shared by the deploy (host config files) and labctl (lab manifests).

Every template is rendered with StrictUndefined: a missing value is an error, never an
empty string in a config file.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from k8slab.topology import DATA_ROOT


@cache
def environment(root: Path = DATA_ROOT) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, values: dict[str, Any], root: Path = DATA_ROOT) -> str:
    """Render a template given by its path relative to `root`, by default the folder holding
    labs/, templates/ and manifests/."""
    return environment(root).get_template(template).render(**values)
