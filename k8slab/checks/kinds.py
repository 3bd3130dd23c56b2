"""The registry of assertion kinds a lab's checks can use (`expect: [{kind: ..., ...}]`).

A kind reads command outputs (named by the check's `run:` keys) and returns pass/fail with
evidence: the line that proved it, or what was wrong. Kinds never change anything. A new
chapter adds Python only when it needs a new kind here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k8slab.checks import parse
from k8slab.ssh import Result
from k8slab.topology import Host, Topology


class CommandFailed(Exception):
    """A command an assertion reads exited non-zero; the message is the evidence."""


@dataclass(frozen=True)
class Outcome:
    ok: bool
    evidence: str
    # A hint for this cause only (socat missing, no kubeconfig, ...), shown instead of the
    # check's own hint when the check fails.
    hint: str = ""
    # Nothing to grade (an optional object that was not applied): the check is skipped.
    skip: bool = False


@dataclass
class Context:
    host: Host
    topology: Topology
    commands: dict[str, str]
    results: dict[str, Result]

    def text(self, name: str) -> str:
        """The command's stdout; CommandFailed naming the command and its cause if it failed."""
        r = self.results[name]
        if not r.ok:
            cause = cause_line(r.stderr) or cause_line(r.stdout) or "no output"
            raise CommandFailed(f"`{_short(self.commands[name])}` exited {r.exit_code}: {cause}")
        return r.stdout


Evaluator = Callable[[Context, dict[str, Any]], Outcome]


@dataclass(frozen=True)
class Kind:
    evaluate: Evaluator
    # Parameters that name a `run:` entry; checked against the check when the lab loads.
    outputs: tuple[str, ...]
    required: tuple[str, ...]
    optional: tuple[str, ...]
    doc: str


KINDS: dict[str, Kind] = {}


# A pass whose evidence starts so is a warning (labctl doctor counts them).
WARNING = "warning: "


def _kind(name: str, outputs: tuple[str, ...], required=(), optional=()):
    def register(fn: Evaluator) -> Evaluator:
        KINDS[name] = Kind(fn, outputs, outputs + tuple(required), tuple(optional), fn.__doc__)
        return fn

    return register


def _short(cmd: str, width: int = 60) -> str:
    cmd = " ".join(cmd.split())
    return cmd if len(cmd) <= width else cmd[: width - 3] + "..."


def matching_line(text: str, regex: str) -> str | None:
    """The first line of `text` that `regex` matches, stripped."""
    return next((line.strip() for line in text.splitlines() if re.search(regex, line)), None)


# klog's own prefix ("E1128 04:30:50.271754   22294 memcache.go:265] ..."): kubectl repeats
# such lines before the sentence that names the cause.
_KLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\] ")
_ERROR_WORDS = re.compile(
    r"error|refused|not found|unable|denied|failed|forbidden|unauthorized|x509|"
    r"timed out|timeout|no route|could not|couldn't|^curl: \(",
    re.IGNORECASE,
)


# kubectl >= 1.30 logs `"Unhandled Error" err="<the error, quotes escaped>"`.
_KLOG_ERR = re.compile(r'^"Unhandled Error" err="(.*)"$')


def _lines(text: str) -> list[str]:
    """The output's lines, plain ones first, then klog lines with their prefix (and the
    `"Unhandled Error" err=` wrapper) cut."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    plain = [line for line in lines if not _KLOG.match(line)]
    logged = []
    for line in lines:
        if _KLOG.match(line):
            line = _KLOG.sub("", line)
            m = _KLOG_ERR.match(line)
            logged.append(m.group(1).replace('\\"', '"') if m else line)
    return plain + logged


def cause_line(text: str) -> str:
    """The line of an error output that says what went wrong: the first plain line with an
    error word, else the first klog line with one (its prefix cut), else the first plain
    line, else "" (no output)."""
    lines = _lines(text)
    return next((line for line in lines if _ERROR_WORDS.search(line)), lines[0] if lines else "")


def _line_matching(text: str, pattern: re.Pattern) -> str | None:
    """The first line (plain lines first, klog lines unwrapped) `pattern` finds."""
    return next((line for line in _lines(text) if pattern.search(line)), None)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "(empty output)"


# (what kubectl printed, hint): kubectl exec and port-forward failing before the command
# or the forwarded connection ever reached the pod. Checks that exec say so first, rather
# than blame curl, the pod or the pod network for what exec itself printed.
_STREAM_CAUSES = (
    (
        re.compile(r"server gave HTTP response to HTTPS client"),
        "from 1.36 the API server hands exec to the kubelet, which asks cri-dockerd's stream "
        "server for HTTPS and gets plain HTTP: set --feature-gates="
        "ExtendWebSocketsToKubelet=false in /etc/kubernetes/manifests/kube-apiserver.yaml on "
        "master (the deploy does this: run it again).",
    ),
    (
        re.compile(r"unable to upgrade connection: (Unauthorized|Forbidden)"),
        "the kubelet on the pod's node refused the API server's client certificate (kubelet "
        "authentication): kube-apiserver's --kubelet-client-certificate/--kubelet-client-key "
        "must be apiserver-kubelet-client.crt/.key, signed by the cluster CA "
        "(`sudo kubeadm certs check-expiration` on master).",
    ),
    (
        # The API server finds the kubelet by the node's INTERNAL-IP: when that is an address
        # every VM has (VirtualBox's NAT 10.0.2.15), it may reach another node's kubelet.
        re.compile(r"unable to upgrade connection: pod does not exist"),
        "the API server reached a kubelet that does not run the pod: the pod's node is "
        "registered with an address that is not its own (`kubectl get nodes -o wide`: "
        "INTERNAL-IP must be the node's node_ip, not a NAT address such as 10.0.2.15 that "
        "every VM has; see net.nodes).",
    ),
    (
        re.compile(r"error dialing backend|unable to upgrade connection|error sending request"),
        "the API server cannot reach the kubelet of the pod's node (port 10250): "
        "`systemctl status kubelet` there, and `kubectl get nodes -o wide` for its address.",
    ),
)


def stream_failure(text: str, verb: str = "kubectl exec") -> Outcome | None:
    """A failed Outcome naming `verb` as what broke, when `text` carries one of kubectl's
    exec/port-forward failures; None otherwise."""
    for pattern, hint in _STREAM_CAUSES:
        line = _line_matching(text, pattern)
        if line is not None:
            return Outcome(False, f"{verb} failed: {line}", hint)
    return None


@_kind("pause-sandboxes", ("pods", "containers"))
def _pause_sandboxes(ctx: Context, p: dict) -> Outcome:
    """Each Running pod on this node has exactly one running k8s_POD_<pod>_<ns>_ container."""
    here = [
        pod
        for pod in parse.pods(ctx.text(p["pods"]))
        if pod.node == ctx.host.name and pod.status == "Running"
    ]
    if not here:
        return Outcome(False, f"no Running pod is scheduled on {ctx.host.name}")
    running = [c for c in parse.containers(ctx.text(p["containers"])) if c.up]
    example = ""
    for pod in here:
        pause = parse.KubeletName("POD", pod.name, pod.namespace)
        found = [c for c in running if parse.kubelet_name(c.name) == pause]
        if len(found) != 1:
            return Outcome(
                False,
                f"{pod.namespace}/{pod.name}: {len(found)} running "
                f"k8s_POD_{pod.name}_{pod.namespace}_* containers",
            )
        example = example or found[0].line
    return Outcome(True, f"{len(here)} pods, one pause each, e.g. {example}")


# What `kubectl get pod` shows for a pod that is over and stays listed until deleted: a
# node-pressure eviction ("Evicted", or since 1.2x also "Completed" / "ContainerStatusUnknown",
# kubernetes#105467), a kubelet admission refusal, a node shutdown. Its Deployment has made
# another one; "Error" is left out: a crash-looping container shows it between restarts.
_LEFTOVER = re.compile(
    r"^(Evicted|Completed|ContainerStatusUnknown|NodeAffinity|OutOf\w+|"
    r"UnexpectedAdmissionError|Terminated|Shutdown|NodeShutdown)$"
)


@_kind(
    "pods-running",
    ("pods",),
    ("namespace",),
    ("name", "prefix", "node", "this_node", "min", "hint", "on_status"),
)
def _pods_running(ctx: Context, p: dict) -> Outcome:
    """Pods `name` (or starting with `prefix`), on `node` (or the check's host with
    `this_node: true`) if given, are Running and ready. With `prefix`, pods that are over
    (Evicted, Completed...) are left out when the others are ready. A pod that is not ready
    fails with the hint `on_status` gives for its STATUS (e.g. CrashLoopBackOff, or
    ImagePullBackOff for Init:ImagePullBackOff too), else `hint`; no pod at all, with the
    hint `on_status` gives for `none`; Terminating pods, on their way out, are reported
    last."""
    want = p.get("name") or f"{p.get('prefix')}*"
    node = ctx.host.name if p.get("this_node") else p.get("node")
    match = [
        pod
        for pod in parse.pods(ctx.text(p["pods"]), p["namespace"])
        if pod.namespace == p["namespace"]
        and (pod.name == p["name"] if p.get("name") else pod.name.startswith(p.get("prefix", "")))
        and (not node or pod.node == node)
    ]
    where = f" on {node}" if node else ""
    on = p.get("on_status", {})
    over = [pod for pod in match if p.get("prefix") and _LEFTOVER.match(pod.status)]
    live = [pod for pod in match if pod not in over]
    if len(live) < int(p.get("min", 1)):
        return Outcome(
            False, f"no pod {p['namespace']}/{want}{where}", on.get("none", p.get("hint", ""))
        )
    waiting = sorted(
        (pod for pod in live if not pod.is_ready), key=lambda x: x.status == "Terminating"
    )
    if waiting:
        pod = waiting[0]
        hint = next(
            (h for s, h in on.items() if pod.status == s or pod.status.endswith(f":{s}")),
            p.get("hint", ""),
        )
        return Outcome(False, pod.line, hint)
    if over:
        listed = ", ".join(f"{x.name} {x.status}" for x in over)
        return Outcome(
            True,
            f"{live[0].line} (left over, not counted: {listed}; `kubectl -n {p['namespace']} "
            "delete pod <name>` tidies them)",
        )
    return Outcome(True, live[0].line)


@_kind("daemonset-ready", ("output",), ("name",))
def _daemonset_ready(ctx: Context, p: dict) -> Outcome:
    """`kubectl get ds`: the row NAME = `name` has DESIRED = READY = the topology's hosts."""
    t = parse.table(ctx.text(p["output"]))
    t.need("NAME", "DESIRED", "READY")
    row = t.row(p["name"])
    if row is None:
        return Outcome(False, f"no DaemonSet {p['name']} in `{_short(ctx.commands[p['output']])}`")
    nodes = len(ctx.topology.hosts)
    ok = row["DESIRED"] == row["READY"] == str(nodes)
    said = f"{row['_line']} ({nodes} nodes in the topology)"
    if row["DESIRED"] != str(nodes):
        # the DaemonSet itself leaves a node out: no pod there to be "not ready"
        said += (
            f": wanted on {row['DESIRED']} of the {nodes} nodes (a nodeSelector, node "
            "affinity or a taint it does not tolerate keeps it off the others)"
        )
    elif not ok:
        said += f": {row['READY']} of {row['DESIRED']} pods ready"
    return Outcome(ok, said)


@_kind("listening", ("output",), ("process", "address"))
def _listening(ctx: Context, p: dict) -> Outcome:
    """`process` listens on `address` (":PORT" for any address, or "IP:PORT")."""
    host, _, port = p["address"].rpartition(":")
    for s in parse.sockets(ctx.text(p["output"])):
        if (
            s.state == "LISTEN"
            and s.process == p["process"]
            and s.local[1] == int(port)
            and (not host or s.local[0] == host)
        ):
            return Outcome(True, s.line)
    return Outcome(False, f"no {p['process']} listening on {p['address']}")


@_kind("peer-connections", ("output",), ("process", "port"))
def _peer_connections(ctx: Context, p: dict) -> Outcome:
    """`process` has an ESTABLISHED connection on `port` (either end) with every other host."""
    port = int(p["port"])
    established = [
        s
        for s in parse.sockets(ctx.text(p["output"]))
        if s.state == "ESTABLISHED"
        and s.process == p["process"]
        and port in (s.local[1], s.peer[1])
    ]
    missing, lines = [], []
    for other in ctx.topology.hosts:
        if other.name == ctx.host.name:
            continue
        conn = next((s for s in established if s.peer[0] == other.node_ip), None)
        if conn:
            lines.append(conn.line)
        else:
            missing.append(f"{other.name} ({other.node_ip})")
    if missing:
        return Outcome(False, f"no {p['process']} connection on {port} to {', '.join(missing)}")
    return Outcome(True, "; ".join(lines))


def _capture(ctx: Context, spec: dict) -> tuple[str | None, str]:
    text = ctx.text(spec["output"])
    m = re.search(spec["regex"], text, re.MULTILINE)
    return (m.group(1), m.group(0)) if m else (None, "")


def _same_value(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_network(a, strict=False) == ipaddress.ip_network(b, strict=False)
    except ValueError:
        return a == b


@_kind("same-capture", (), ("first", "second"))
def _same_capture(ctx: Context, p: dict) -> Outcome:
    """Group 1 of `first.regex` in `first.output` equals that of `second` (CIDRs compared);
    each side's `missing` says in plain words what is absent ({host}: the check's host),
    its `hint` what to do about it."""
    a, a_text = _capture(ctx, p["first"])
    b, b_text = _capture(ctx, p["second"])
    if a is None or b is None:
        spec = p["first"] if a is None else p["second"]
        return Outcome(False, spec["missing"].format(host=ctx.host.name), spec.get("hint", ""))
    return Outcome(_same_value(a, b), f"{a_text} vs {b_text}")


# kube-proxy's IPVS mode matches every ClusterIP through one ipset (pkg/proxy/ipvs/proxier.go:
# `-A KUBE-SERVICES ... -m set --match-set KUBE-CLUSTER-IP dst,dst ...`).
_IPVS_RULE = r"^-A KUBE-SERVICES .*--match-set KUBE-CLUSTER-IP "


@_kind("service-rules", ("services", "rules"), ("required",), ("optional", "rejects", "owners"))
def _service_rules(ctx: Context, p: dict) -> Outcome:
    """kube-proxy's work for each port of the `required` (and existing `optional`) ns/name
    Services: a nat KUBE-SERVICES jump to its KUBE-SVC-/KUBE-SVL- chain, or, for a Service
    with no ready endpoints, the filter-table REJECT it writes instead (read from `rejects`;
    that is the Service's fault, named with its `owners` check, not kube-proxy's)."""
    listed = {f"{s.namespace}/{s.name}": s for s in parse.services(ctx.text(p["services"]))}
    nat = parse.service_rules(ctx.text(p["rules"]))
    rejects = parse.service_rules(ctx.text(p["rejects"])) if p.get("rejects") else []
    for want in p["required"]:
        if want not in listed:
            return Outcome(False, f"Service {want} is not in `kubectl get svc -A`")
    checked = [listed[w] for w in [*p["required"], *p.get("optional", [])] if w in listed]
    example, jumps, empty = "", 0, {}
    for svc in checked:
        ref = f"{svc.namespace}/{svc.name}"
        for port, proto in svc.ports:
            key = (svc.cluster_ip, proto, port)
            mine = [r for r in nat if (r.ip, r.proto, r.port) == key]
            jump = next((r for r in mine if r.is_service_jump), None)
            if jump:
                jumps += 1
                example = example or jump.line
                continue
            reject = next(
                (r for r in rejects if (r.ip, r.proto, r.port) == key and r.target == "REJECT"),
                None,
            )
            if reject:
                empty.setdefault(ref, []).append(f"{port}/{proto}")
                continue
            ipvs = matching_line(ctx.text(p["rules"]), _IPVS_RULE)
            if ipvs:
                return Outcome(
                    False,
                    f"kube-proxy is in IPVS mode on this node (`{ipvs}`): no per-Service "
                    "KUBE-SERVICES jumps to read",
                    "the course's kube-proxy runs in iptables mode: set `mode: iptables` in "
                    "`kubectl -n kube-system edit cm kube-proxy`, then `kubectl -n kube-system "
                    "delete pod -l k8s-app=kube-proxy`; in IPVS mode `sudo ipvsadm -Ln` shows "
                    "the Services instead.",
                )
            other = (
                f" (only `{mine[0].line}`, which is not the jump to the Service)" if mine else ""
            )
            return Outcome(
                False,
                f"no KUBE-SERVICES jump for {ref} {svc.cluster_ip}:{port}/{proto}{other}",
            )
    # A Service without endpoints comes first: it is what a reader must act on.
    said = []
    owners = p.get("owners", {})
    for ref, ports in empty.items():
        owner = f"; {owners[ref]} owns that" if ref in owners else ""
        said.append(
            f"Service {ref} has no ready endpoints: kube-proxy rejects {', '.join(ports)} "
            f"as it should{owner}"
        )
    plural = "port jumps" if jumps == 1 else "ports jump"
    said.append(
        f"{jumps} ClusterIP {plural} to its Service chain"
        + (f", e.g. {example}" if example else "")
    )
    return Outcome(True, " | ".join(said))


@_kind("ready-endpoints", ("output",), (), ("min", "max"))
def _ready_endpoints(ctx: Context, p: dict) -> Outcome:
    """Lines "IP true|false" (an EndpointSlice jsonpath): between min and max are ready."""
    rows = [line.split() for line in ctx.text(p["output"]).splitlines() if line.split()]
    ready = [r[0] for r in rows if r[1:] == ["true"]]
    waiting = [r[0] for r in rows if r[1:] != ["true"]]
    low, high = int(p.get("min", 1)), int(p.get("max", 1 << 30))
    said = f"{len(ready)} ready endpoints" + (f": {', '.join(ready)}" if ready else "")
    if waiting:
        said += f" ({len(waiting)} not ready: {', '.join(waiting)})"
    return Outcome(low <= len(ready) <= high, said)


@_kind("deployment-ready", ("output",), ("name", "replicas"))
def _deployment_ready(ctx: Context, p: dict) -> Outcome:
    """`kubectl get deploy`: the row NAME = `name` has READY replicas/replicas."""
    t = parse.table(ctx.text(p["output"]))
    t.need("NAME", "READY")
    row = t.row(p["name"])
    if row is None:
        return Outcome(False, f"no Deployment {p['name']} in `{_short(ctx.commands[p['output']])}`")
    n = int(p["replicas"])
    wanted = row["READY"].partition("/")[2]
    if wanted != str(n):
        # scaled (or edited) away from the lab's count: not a readiness problem
        return Outcome(False, f"{row['_line']}: it asks for {wanted} replicas, the lab for {n}")
    return Outcome(row["READY"] == f"{n}/{n}", row["_line"])


@_kind("matches", ("output",), ("regex",), ("warning", "says"))
def _matches(ctx: Context, p: dict) -> Outcome:
    """A line of the output matches `regex`; the evidence is that line (in `says`, where
    `{line}` stands for it, when the line alone means little: `0`). With a non-empty
    `warning`, no match passes too, its evidence "warning: <warning> (printed: ...)"."""
    text = ctx.text(p["output"])
    line = matching_line(text, p["regex"])
    if line is not None:
        return Outcome(True, p["says"].replace("{line}", line) if p.get("says") else line)
    if p.get("warning"):
        return Outcome(True, f"{WARNING}{p['warning']} (printed: {_first_line(text)})")
    return Outcome(False, f"`{_short(ctx.commands[p['output']])}` printed: {_first_line(text)}")


READ_FAILED = "read failed: "


@_kind("increases", ("output",), ("regex",))
def _increases(ctx: Context, p: dict) -> Outcome:
    """The number captured by `regex` is larger in the last matching line than the first;
    a line "read failed: <error>" (the check's script prints it) says which read failed."""
    text = ctx.text(p["output"])
    values = [int(m.group(1)) for m in re.finditer(p["regex"], text)]
    failed = matching_line(text, f"^{READ_FAILED}")
    broken = stream_failure(failed or "")
    if len(values) < 2 and broken:
        return broken
    if len(values) < 2 and failed:
        which = "the second read" if values else "the first read"
        return Outcome(False, f"{which} failed: {failed.removeprefix(READ_FAILED)}")
    if len(values) < 2:
        seen = f"only {values[0]}" if values else "nothing"
        return Outcome(False, f"read {seen}; the value did not change in time")
    return Outcome(values[-1] > values[0], f"{values[0]} -> {values[-1]}")


@_kind("same-text", ("output", "expected"))
def _same_text(ctx: Context, p: dict) -> Outcome:
    """The output equals the `expected` command's output (surrounding whitespace ignored)."""
    got, want = ctx.text(p["output"]).strip(), ctx.text(p["expected"]).strip()
    return Outcome(got == want, f"{got or '(empty)'!s} (expected {want})")


FORWARD_LOG = "port-forward: "


@_kind("prints-pod-node", ("output", "pods"), ("pod",))
def _prints_pod_node(ctx: Context, p: dict) -> Outcome:
    """The output's first line is the name of the node `pod` runs on (from a `kubectl get
    pod -o wide`); lines "port-forward: ..." are kubectl port-forward's own output."""
    pod = next((x for x in parse.pods(ctx.text(p["pods"])) if x.name == p["pod"]), None)
    if pod is None:
        return Outcome(False, f"pod {p['pod']} not found")
    lines = ctx.text(p["output"]).splitlines()
    log = "\n".join(x.removeprefix(FORWARD_LOG) for x in lines if x.startswith(FORWARD_LOG))
    got = next((x.strip() for x in lines if not x.startswith(FORWARD_LOG)), "")
    if got == pod.node:
        return Outcome(True, f"printed {got}; {p['pod']} runs on {pod.node}")
    said = f"printed {got or '(nothing)'}; {p['pod']} runs on {pod.node}"
    socat = _line_matching(log, _SOCAT_MISSING)
    if socat:
        return Outcome(
            False,
            f"port-forward failed: {socat}",
            f"socat is missing on {pod.node}: cri-dockerd runs socat on the pod's node for "
            f"port-forward; install it there (sudo apt-get install -y socat) and verify again.",
        )
    busy = _line_matching(log, _PORT_TAKEN)
    if busy:
        port = re.search(r"on port (\d+)|:(\d+): bind", busy)
        n = next(g for g in port.groups() if g) if port else "PORT"
        return Outcome(
            False,
            f"port-forward failed: {busy} ({said})",
            f"port {n} on master is taken by another program (an old `kubectl port-forward`?): "
            f"`sudo ss -ltnp | grep :{n}` names it; stop it, or set forward_port under "
            "labs.ch09.",
        )
    broken = stream_failure(log, "port-forward")
    if broken:
        return Outcome(False, f"{broken.evidence} ({said})", broken.hint)
    error = cause_line(log) if _ERROR_WORDS.search(log) else ""
    if error:
        return Outcome(False, f"port-forward failed: {error} ({said})")
    return Outcome(False, said)


# cri-dockerd: "unable to do port forwarding: socat not found"; containerd: "failed to find
# socat: exec: \"socat\": executable file not found in $PATH".
_SOCAT_MISSING = re.compile(r"socat\b.*(not found|no such file)", re.IGNORECASE)
_PORT_TAKEN = re.compile(r"Unable to listen on port|address already in use")


# (what kubectl printed, what that is, hint): kubectl's own sentences (its klog lines too:
# the last line can mislead, e.g. "The connection to the server 10.0.2.15:6443 was refused"
# when it was the proxy that refused), most specific first.
_API_CAUSES = (
    (
        re.compile(r"localhost:8080"),
        "no kubeconfig: kubectl fell back to localhost:8080",
        "kubectl on master has no kubeconfig for the SSH user: mkdir -p ~/.kube && sudo cp "
        "/etc/kubernetes/admin.conf ~/.kube/config && sudo chown $(id -u):$(id -g) "
        "~/.kube/config (the deploy does this; or set kubectl under labs.ch09).",
    ),
    (
        # A dead proxy: "proxyconnect tcp: ..."; a proxy refusing CONNECT: only its status
        # text ("Unable to connect to the server: Forbidden"), which no API server prints.
        re.compile(r"proxyconnect|^Unable to connect to the server: [A-Z][a-z]+( [A-Z][a-z]+)*$"),
        "a proxy is in the way",
        "kubectl sends the API server's address through the proxy of $HTTPS_PROXY "
        "(/etc/environment, ~/.bashrc): add master's address to NO_PROXY (e.g. "
        "NO_PROXY=10.0.2.15,10.96.0.0/12,10.32.0.0/12) or unset HTTPS_PROXY for kubectl.",
    ),
    (
        re.compile(r"certificate has expired or is not yet valid: .* is before"),
        "a certificate is not valid yet: master's clock is behind",
        "set master's clock (`date`; `sudo timedatectl set-ntp true`, or the VM's time sync "
        "with the host), then run kubectl again.",
    ),
    (
        re.compile(r"certificate has expired"),
        "a certificate has expired",
        "check master's clock (`date`) first; if it is right, the cluster's certificates are "
        "over a year old: `sudo kubeadm certs check-expiration`, `sudo kubeadm certs renew "
        "all`, restart kubelet, and copy /etc/kubernetes/admin.conf to ~/.kube/config again.",
    ),
    (
        re.compile(r"certificate is valid for .*, not "),
        "the API server's certificate does not name the kubeconfig's address",
        "~/.kube/config's server: is an address kubeadm did not put in the API server's "
        "certificate: use the node_ip kubeadm init advertised (copy /etc/kubernetes/admin.conf "
        "again), or add the address to apiServer.certSANs and regenerate the certificate.",
    ),
    (
        re.compile(r"x509|certificate", re.IGNORECASE),
        "certificate problem",
        "~/.kube/config does not belong to this cluster (copied before a kubeadm reset/init?): "
        "copy /etc/kubernetes/admin.conf to ~/.kube/config again.",
    ),
    (
        re.compile(r"Unauthorized|must be logged in", re.IGNORECASE),
        "credentials refused",
        "the API server does not accept ~/.kube/config's user (a kubeconfig from before a "
        "kubeadm reset, or its certificate expired: `sudo kubeadm certs check-expiration`): "
        "copy /etc/kubernetes/admin.conf to ~/.kube/config again.",
    ),
    (
        re.compile(r"forbidden", re.IGNORECASE),
        "not allowed",
        "~/.kube/config's user is known but may not list nodes (RBAC): use the admin user of "
        "/etc/kubernetes/admin.conf; just after kube-apiserver starts, wait a few seconds.",
    ),
    (
        re.compile(r"The connection to the server \S+ was refused|connection refused"),
        "API server down",
        "kube-apiserver is not answering on master: `sudo docker ps -a | grep kube-apiserver` "
        "and `journalctl -u kubelet -n 50`; kubelet runs it from its static pod manifest, "
        "/etc/kubernetes/manifests/kube-apiserver.yaml, which must be there; a cluster not "
        "deployed yet has none (run the deploy).",
    ),
    (
        re.compile(r"TLS handshake timeout|awaiting headers"),
        "the API server accepted the connection but did not answer",
        "kube-apiserver is starting or overloaded (etcd slow, master short of memory or CPU): "
        "wait a minute and retry; `free -m`, `sudo docker ps | grep -e apiserver -e etcd` on "
        "master.",
    ),
    (
        re.compile(r"i/o timeout|no route to host|network is unreachable"),
        "API server unreachable",
        "the server address in ~/.kube/config is not reachable from master (wrong IP after a "
        "network change?): compare it with `ip -4 addr` and node_ip.",
    ),
    (
        re.compile(r"deadline exceeded"),
        "no answer in time",
        "kube-apiserver did not answer in time: starting or overloaded (`sudo docker ps | grep "
        "apiserver` on master), or ~/.kube/config's server address is not reachable.",
    ),
    (
        re.compile(r"command not found|No such file"),
        "kubectl is not installed on master",
        "deploy the cluster first (kubectl is installed with kubeadm and kubelet).",
    ),
)


@_kind("api-reachable", ("output",))
def _api_reachable(ctx: Context, p: dict) -> Outcome:
    """The kubectl command succeeded; otherwise the cause kubectl printed (no kubeconfig,
    a proxy, a certificate expired or for another address or cluster, credentials or RBAC,
    API server down, slow or unreachable) with a hint for that cause."""
    r = ctx.results[p["output"]]
    if r.ok:
        rows = len(parse.table(r.stdout).rows)
        return Outcome(True, f"the API server answers ({rows} nodes listed)")
    said = f"{r.stderr}\n{r.stdout}"
    for pattern, what, hint in _API_CAUSES:
        line = _line_matching(said, pattern)
        if line is not None:
            return Outcome(False, f"{what}: {line}", hint)
    return Outcome(False, f"kubectl failed: {cause_line(said) or f'exit {r.exit_code}, no output'}")


@_kind("node-registered", ("output",), ("runtime",))
def _node_registered(ctx: Context, p: dict) -> Outcome:
    """`kubectl get nodes -o wide`: the check's host is a node, Ready, with INTERNAL-IP =
    its node_ip and a CONTAINER-RUNTIME starting with `runtime` (e.g. docker://)."""
    host = ctx.host
    listed = parse.nodes(ctx.text(p["output"]))
    node = next((n for n in listed if n.name == host.name), None)
    if node is None:
        names = ", ".join(n.name for n in listed) or "none"
        return Outcome(
            False,
            f"{host.name} is not a node of the cluster (nodes: {names})",
            f"{host.name} has not joined: run the deploy again (it joins workers), or check "
            f"the hostname: the node name is the host's hostname and must be {host.name}.",
        )
    if "Ready" not in node.status.split(","):
        return Outcome(False, f"{host.name} is {node.status}: {node.line}")
    if node.internal_ip != host.node_ip:
        return Outcome(
            False,
            f"{host.name}'s INTERNAL-IP is {node.internal_ip}, not its node_ip {host.node_ip}",
            f"kubelet on {host.name} registered another address (VirtualBox's NAT 10.0.2.15 is "
            f"the usual one): KUBELET_EXTRA_ARGS=--node-ip={host.node_ip} in "
            "/etc/default/kubelet (the deploy writes it), then restart kubelet.",
        )
    if not node.runtime.startswith(p["runtime"]):
        return Outcome(
            False,
            f"{host.name} runs {node.runtime}, not {p['runtime']}",
            f"kubelet on {host.name} is not using cri-dockerd: its "
            "--container-runtime-endpoint must be unix:///var/run/cri-dockerd.sock.",
        )
    return Outcome(True, node.line)


@_kind("weave-connections", ("output",))
def _weave_connections(ctx: Context, p: dict) -> Outcome:
    """Weave's router (its /status/connections page) holds an established connection to
    every other host's node_ip; the evidence names the data path (fastdp or sleeve), and
    pending or failed connections come with weave's own reason."""
    conns = parse.weave_connections(ctx.text(p["output"]))
    good, bad = [], []
    for other in ctx.topology.hosts:
        if other.name == ctx.host.name:
            continue
        best = parse.weave_connection_to(conns, other.node_ip)
        who = f"{other.name} ({other.node_ip})"
        if best is None:
            bad.append(f"{who}: no connection")
        elif best.state == "established":
            good.append(f"{who} established {best.path} {best.mtu}".strip())
        elif best.state == "pending":
            bad.append(
                f"{who}: pending (TCP is up, weave has no UDP heartbeat yet: "
                f"{best.path or 'no data path'})"
            )
        else:
            bad.append(f"{who}: {best.state}: {best.reason}")
    if bad:
        return Outcome(False, "; ".join(bad + good))
    return Outcome(True, "; ".join(good))


def _curl_error(r: Result) -> str:
    return matching_line(f"{r.stdout}\n{r.stderr}", r"curl: \(\d+\)") or ""


@_kind("curl-prints", ("output",), ("regex",), ("on_error",))
def _curl_prints(ctx: Context, p: dict) -> Outcome:
    """A `curl -sS` (run anywhere) printed a line matching `regex`; otherwise curl's own
    error ("curl: (6) Could not resolve host", "(7) ... refused", "(28) ... timed out"),
    with the hint `on_error` gives for that curl exit code. "(28) Resolving timed out" is
    a name that did not resolve (no DNS server answered): it takes code 6's hint."""
    r = ctx.results[p["output"]]
    line = matching_line(r.stdout, p["regex"])
    if r.ok and line is not None:
        return Outcome(True, line)
    broken = stream_failure(f"{r.stdout}\n{r.stderr}")
    if broken:
        return broken
    error = _curl_error(r)
    if error:
        code = int(re.search(r"\((\d+)\)", error).group(1))
        if code == 28 and "Resolving timed out" in error:
            code = 6
        return Outcome(False, error, p.get("on_error", {}).get(code, ""))
    text = ctx.text(p["output"])  # a failure that is not curl's (kubectl exec's) raises here
    return Outcome(False, f"`{_short(ctx.commands[p['output']])}` printed: {_first_line(text)}")


@_kind("pod-reaches", ("output", "pods"), ("client", "namespace", "prefix", "regex"))
def _pod_reaches(ctx: Context, p: dict) -> Outcome:
    """The `client` pod (default namespace) reached, by pod IP, the `namespace`/`prefix`*
    pods on the check's host: `output` has "IP <first line curl printed>" per target."""
    listed = parse.pods(ctx.text(p["pods"]))
    client = next((x for x in listed if x.namespace == "default" and x.name == p["client"]), None)
    if client is None:
        return Outcome(False, f"no pod default/{p['client']} to curl from")
    targets = [
        x
        for x in listed
        if x.namespace == p["namespace"]
        and x.name.startswith(p["prefix"])
        and x.node == ctx.host.name
        and x.status == "Running"
    ]
    if not targets:
        return Outcome(
            False,
            f"no Running {p['namespace']}/{p['prefix']}* pod on {ctx.host.name} to reach",
            f"the scheduler put none on {ctx.host.name}: `kubectl -n {p['namespace']} get pod "
            "-o wide`; `kubectl rollout restart` spreads them again.",
        )
    answers = {}
    for line in ctx.text(p["output"]).splitlines():
        ip, _, said = line.strip().partition(" ")
        answers[ip] = said.strip()
    said = []
    for t in targets:
        got = answers.get(t.ip)
        path = f"{client.name} on {client.node} -> {t.name} {t.ip} on {t.node}"
        if got is None:
            return Outcome(False, f"{path}: not tried (the pod list changed meanwhile?)")
        broken = stream_failure(got)
        if broken:
            return Outcome(False, f"{path}: {broken.evidence}", broken.hint)
        if not re.search(p["regex"], got):
            across = client.node != t.node
            hint = (
                f"pod-to-pod traffic between {client.node} and {t.node} is lost: weave's data "
                "path (net.weave-connections: UDP 6783-6784 between the VMs) or a firewall."
                if across
                else f"the pod answers nothing on its own node: `kubectl -n {p['namespace']} "
                f"logs {t.name}`."
            )
            return Outcome(False, f"{path}: {got or '(nothing)'}", hint)
        said.append(f"{path}: {got}")
    return Outcome(True, "; ".join(said))


@_kind("answers-on-node-ip", ("output",), ("regex",), ("exists", "missing"))
def _answers_on_node_ip(ctx: Context, p: dict) -> Outcome:
    """`output` has "IP <first line curl printed>" per node IP: the line of the check's
    host's node_ip matches `regex`. Skipped when the `exists` output is empty (an optional
    object not applied; `missing` says how to apply it)."""
    if p.get("exists") and not ctx.text(p["exists"]).strip():
        return Outcome(True, p.get("missing", "not applied"), skip=True)
    ip = ctx.host.node_ip
    said = next(
        (
            line.partition(" ")[2].strip()
            for line in ctx.text(p["output"]).splitlines()
            if line.split()[:1] == [ip]
        ),
        None,
    )
    if said is None:
        return Outcome(False, f"{ip} was not tried")
    return Outcome(re.search(p["regex"], said) is not None, f"{ip}: {said or '(nothing)'}")
