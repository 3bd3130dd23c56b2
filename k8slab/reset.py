"""Undo a cluster on every node (`labctl reset`): kubeadm reset, Weave's state, links and
iptables chains, and nothing else.

Only chains named KUBE-* or WEAVE-* are removed: first the rules of other chains that jump
to them (deleted one by one with -D and the exact rule), then the chains themselves (-F, -X).
Built-in chains are never flushed, so rules such as the one letting SSH in stay::

    >>> with Fleet(topo.hosts) as fleet:
    ...     removed = reset.reset_host(fleet.run, "slave1")
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from k8slab.checks.parse import iptables_rules
from k8slab.ssh import Result
from k8slab.topology import CRI_SOCKET

Run = Callable[[str, str], Result]

OUR_CHAINS = re.compile(r"^(KUBE|WEAVE)-")
OUR_LINKS = re.compile(r"^(weave|datapath|vethwe-.*)$")
TABLES = ("filter", "nat", "mangle", "raw", "security")
IPTABLES = ("iptables", "ip6tables")
WEAVE_FILES = "/etc/cni/net.d/*weave* /var/lib/weave"
PATH = "PATH=$PATH:/usr/sbin:/sbin"


class ResetError(RuntimeError):
    """A removal that failed on a host; one line naming it."""


@dataclass
class Removed:
    host: str
    lines: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, line: str, kind: str = "", count: int = 1) -> None:
        self.lines.append(line)
        if kind:
            self.counts[kind] = self.counts.get(kind, 0) + count

    def summary(self) -> str:
        """One line: what happened to kubeadm, then how many of each thing went."""
        said = [f"{n} {kind}{'' if n == 1 else 's'}" for kind, n in self.counts.items()]
        return self.lines[0] + (f"; removed {', '.join(said)}" if said else "")


def _must(run: Run, host: str, cmd: str) -> Result:
    r = run(host, cmd)
    if not r.ok:
        said = (r.stderr.strip() or r.stdout.strip()).splitlines()
        raise ResetError(
            f"{host}: `{cmd}` exited {r.exit_code}: {said[-1] if said else 'no output'}"
        )
    return r


def plan_iptables(rules: str) -> tuple[list[str], list[str]]:
    """From `iptables -S -t TABLE`: (jump rules to delete, as -D arguments; our chains).

    A jump rule is one in a chain that is not ours whose target (-j/-g) is one of ours."""
    ours = [line.split()[1] for line in rules.splitlines() if line.startswith("-N ")]
    ours = [c for c in ours if OUR_CHAINS.match(c)]
    jumps = []
    for _line, words in iptables_rules(rules):
        chain = words[1]
        targets = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-j", "-g")]
        if chain not in ours and any(t in ours for t in targets):
            # iptables -S writes a ' inside a quoted comment as \' (Weave's "NOTE: this must
            # go before '-j KUBE-FORWARD'"), which the shell keeps: quote the words anew.
            words = [w.replace("\\'", "'") for w in words]
            jumps.append(shlex.join(["-D", *words[1:]]))
    return jumps, ours


def reset_host(run: Run, host: str) -> Removed:
    """Everything `labctl reset` removes from one host; each removal is a line."""
    done = Removed(host)

    if run(host, "command -v kubeadm").ok:
        _must(run, host, f"sudo kubeadm reset -f --cri-socket {CRI_SOCKET}")
        done.add("kubeadm reset -f")
    else:
        done.add("kubeadm not installed: nothing to reset")

    files = _must(
        run,
        host,
        f"sudo sh -c 'for f in {WEAVE_FILES}; do "
        'if [ -e "$f" ]; then rm -rf "$f" && echo "$f"; fi; done\'',
    )
    for path in files.stdout.split():
        done.add(f"removed {path}", "file")

    links = _must(run, host, "ip -o link show").stdout
    for line in links.splitlines():
        m = re.match(r"^\d+:\s+([^:@\s]+)", line)
        if m and OUR_LINKS.match(m.group(1)):
            # deleting weave can take datapath/vethwe with it: "cannot find device" is fine
            r = run(host, f"sudo ip link del {shlex.quote(m.group(1))}")
            if r.ok:
                done.add(f"deleted link {m.group(1)}", "link")

    for tool in IPTABLES:
        if not run(host, f"{PATH}; command -v {tool}").ok:
            continue
        for table in TABLES:
            listed = run(host, f"{PATH}; sudo {tool} -S -t {table}")
            if not listed.ok:  # table not in this kernel
                continue
            jumps, chains = plan_iptables(listed.stdout)
            for rule in jumps:
                _must(run, host, f"{PATH}; sudo {tool} -t {table} {rule}")
                done.add(f"{tool} -t {table} {rule}", "iptables rule")
            for chain in chains:
                _must(run, host, f"{PATH}; sudo {tool} -t {table} -F {chain}")
            for chain in chains:
                _must(run, host, f"{PATH}; sudo {tool} -t {table} -X {chain}")
            if chains:
                done.add(
                    f"{tool} -t {table}: deleted chains {', '.join(chains)}", "chain", len(chains)
                )
    return done
