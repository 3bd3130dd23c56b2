"""Weave Net's data path, fastdp or sleeve, decided for the whole cluster from its nodes.

fastdp is the kernel's openvswitch datapath. Where a node's kernel has no openvswitch
(containers, some cloud kernels) Weave falls back to a plain bridge on its first start and
refuses that bridge on every later start of the container (`Existing bridge type "bridge" is
different than requested "bridged_fastdp"`, weaveworks/weave#3634), so any restart of Weave
there is fatal. `WEAVE_NO_FASTDP=1` (sleeve from the start) survives restarts. The setting is
the DaemonSet's env, the same on every node, so `weave_fastdp: auto` (the default) runs fastdp
only when every node can::

    >>> datapath("auto", {"master": "loaded", "slave1": "missing"})
    'sleeve'

The probe is the same shell for the deploy (k8slab.facts.KernelModuleStates, read on every
node before the control plane's phase renders the manifest) and for `labctl doctor`'s
`weave-datapath` check (k8slab/preflight/lab.yaml; a test keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Mapping

SETTINGS = ("auto", True, False)
MODULE = "openvswitch"
ISSUE = "weaveworks/weave#3634"


def probe_command(modules: tuple[str, ...] = (MODULE,)) -> str:
    """One line per module: `NAME loaded`, `built in`, `loadable` or `missing`; the style of
    doctor's kernel-modules check, plus /sys/module (built in where modules.builtin is absent)."""
    return (
        "PATH=$PATH:/sbin:/usr/sbin; "
        f"for m in {' '.join(modules)}; do "
        'if grep -qs "^$m " /proc/modules; then echo "$m loaded"; '
        'elif [ -d "/sys/module/$m" ]; then echo "$m built in"; '
        'elif grep -qs "/$m.ko" "/lib/modules/$(uname -r)/modules.builtin"; '
        'then echo "$m built in"; '
        'elif modprobe -n "$m" 2>/dev/null; then echo "$m loadable"; '
        'else echo "$m missing"; fi; done'
    )


def module_state(text: str, module: str = MODULE) -> str:
    """What the probe said of `module`: loaded, built in, loadable, or missing (also when the
    probe printed nothing about it)."""
    for line in text.splitlines():
        words = line.split(None, 1)
        if len(words) == 2 and words[0] == module:
            return words[1].strip()
    return "missing"


def can_fastdp(state: str) -> bool:
    return state in ("loaded", "built in", "loadable")


def datapath(setting: bool | str, states: Mapping[str, str]) -> str:
    """ "fastdp" or "sleeve" for the whole cluster: `states` maps every node to its
    module_state(). auto: fastdp only when every node can."""
    if setting == "auto":
        return "fastdp" if all(can_fastdp(s) for s in states.values()) else "sleeve"
    return "fastdp" if setting else "sleeve"


def why(setting: bool | str, states: Mapping[str, str]) -> str:
    """One line for the deploy's output: the data path and what decided it."""
    mode = datapath(setting, states)
    if setting != "auto":
        return f"{mode} (weave_fastdp {str(setting).lower()})"
    lacking = sorted(n for n, s in states.items() if not can_fastdp(s))
    if lacking:
        return f"sleeve: no {MODULE} on {', '.join(lacking)} (weave_fastdp auto)"
    return f"fastdp: {MODULE} on every node (weave_fastdp auto)"


def evidence(setting: bool | str, node: str, states: Mapping[str, str]) -> tuple[bool, str]:
    """(is a warning, the line) for `node` in doctor: which mode it will get, and why. `states`
    holds the nodes that could be read, `node` among them."""
    mine = states[node]
    have = f"{MODULE} {mine}" if can_fastdp(mine) else f"{MODULE} not available"
    if setting is False:
        return False, f"{have}: Weave runs sleeve (weave_fastdp false)"
    if setting is True:
        if can_fastdp(mine):
            return False, f"{have}: Weave runs fastdp (weave_fastdp true)"
        return True, (
            f"{have}: Weave falls back to a plain bridge here and refuses it on every restart "
            f"({ISSUE}); set weave_fastdp: auto or false"
        )
    if not can_fastdp(mine):
        return False, f"{have}: Weave runs sleeve (weave_fastdp auto)"
    lacking = sorted(n for n, s in states.items() if not can_fastdp(s))
    if lacking:
        return False, (
            f"{have}, but not on {', '.join(lacking)}: Weave runs sleeve on every node "
            "(weave_fastdp auto)"
        )
    return False, f"{have}: Weave runs fastdp (weave_fastdp auto)"
