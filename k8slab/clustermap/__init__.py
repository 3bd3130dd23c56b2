"""`labctl map`: the pictures chapter 09 is taught with, drawn from the learner's own cluster.

Read from the commands verify's checks run, found through the assertion kinds that read them
(so verify's shared cache and a recorded bundle answer them), plus two of its own: `ip -o -4
addr; ip -o link` on each node (the weave bridge and its veths; doctor runs the same) and
`grep -r .` of a hostPath folder on the pod's node. An output that cannot be read (not in a
bundle, a host down, a command failing) leaves its part `None`, and `Map.unknown` says why.
What is broken carries the verify check that owns it::

    >>> m = build(lab, topo, Commands(Replay(path).run))
    >>> print(text.render(m, width=80, colour=False))
"""

from __future__ import annotations

import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from k8slab.checks import parse
from k8slab.checks.engine import Commands
from k8slab.checks.kinds import cause_line
from k8slab.labs import Check, Lab, render_manifests
from k8slab.ssh import SSHError
from k8slab.topology import Topology

# The deploy's kubeadm-config sets dnsDomain to this; CoreDNS answers <svc>.<ns>.svc.<it>.
CLUSTER_DOMAIN = "cluster.local"
# The same string as doctor's check, so a bundle recorded by either answers both.
LINKS = "ip -o -4 addr; ip -o link"
WEAVE_BRIDGE = "weave"
DNS_SERVICE = ("kube-system", "kube-dns")


@dataclass(frozen=True)
class Fault:
    what: str
    check: str  # the verify check that owns it; "" when none does


@dataclass
class Container:
    name: str
    id: str
    up: bool


@dataclass
class Pod:
    namespace: str
    name: str
    ip: str
    status: str
    ready: str
    node: str
    pause: str | None = None  # the sandbox's container id as `docker ps` shows it
    containers: list[Container] = field(default_factory=list)
    veth: str | None = None
    fault: Fault | None = None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class Peer:
    name: str
    ip: str
    state: str  # weave's: established, pending, failed, ...; "none" when weave lists none
    path: str  # fastdp or sleeve
    fault: Fault | None


@dataclass
class Node:
    name: str
    ip: str
    role: str
    status: str | None = None  # kubectl's STATUS (Ready, NotReady); None: not read
    fault: Fault | None = None
    bridge: str | None = None  # "weave 10.32.0.3/12 up, 4 ports"
    peers: list[Peer] | None = None
    pods: list[Pod] = field(default_factory=list)


@dataclass
class Endpoint:
    chain: str  # KUBE-SEP-...
    ip: str
    port: int
    pod: str  # ns/name, "" when no pod has that IP
    node: str


@dataclass
class ServicePort:
    port: int
    proto: str
    chain: str | None  # KUBE-SVC-...; None when no node's rules could be read
    endpoints: list[Endpoint]
    nodes: list[str]  # the nodes whose KUBE-SERVICES jump to `chain`
    fault: Fault | None


@dataclass
class Service:
    namespace: str
    name: str
    cluster_ip: str
    dns: str
    ports: list[ServicePort]
    fault: Fault | None = None  # not in `kubectl get svc -A`

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class Mount:
    container: str
    path: str
    read_only: bool


@dataclass
class Volume:
    pod: Pod | None  # None: the pod is not on the cluster
    pod_ref: str
    name: str
    kind: str  # emptyDir | hostPath
    host_path: str
    mounts: list[Mount]
    files: list[str] | None = None  # hostPath: "path:line" read on the pod's node
    missing: Fault | None = None  # the pod is not on the cluster

    @property
    def fault(self) -> Fault | None:
        return self.pod.fault if self.pod else self.missing


@dataclass
class Map:
    lab: str
    title: str
    source: str  # "live" or where the bundle was replayed from
    nodes: list[Node]
    services: list[Service]
    volumes: list[Volume]
    unknown: list[str]  # each output that could not be read, and why

    def faults(self) -> list[tuple[str, Fault]]:
        """Everything broken, with where it is, in map order."""
        found = []
        for n in self.nodes:
            found += [(n.name, n.fault)] if n.fault else []
            found += [(f"{n.name}: weave to {p.name}", p.fault) for p in n.peers or [] if p.fault]
            found += [(f"{n.name}: {p.ref}", p.fault) for p in n.pods if p.fault]
        found += [(v.pod_ref, v.missing) for v in self.volumes if v.missing]
        for s in self.services:
            if s.fault:
                found.append((s.ref, s.fault))
            found += [(f"{s.ref} {p.port}/{p.proto}", p.fault) for p in s.ports if p.fault]
        return found


class _Reader:
    """Command outputs through verify's shared cache; a failed read becomes a note."""

    def __init__(self, commands: Commands):
        self.commands = commands
        self.unknown: list[str] = []

    def text(self, host: str, cmd: str, ok_codes: tuple[int, ...] = (0,)) -> str | None:
        short = " ".join(cmd.split())
        try:
            r = self.commands(host, cmd)
        except SSHError as e:
            why = str(e)
        else:
            if r.exit_code in ok_codes:
                return r.stdout
            said = cause_line(r.stderr) or cause_line(r.stdout) or "no output"
            why = f"{host}: `{short[:60]}` exited {r.exit_code}: {said}"
        self.note(why)
        return None

    def note(self, why: str) -> None:
        if why not in self.unknown:
            self.unknown.append(why)


def _uses(lab: Lab, kind: str) -> list[tuple[Check, dict]]:
    return [(c, a) for c in lab.checks for a in c.expect if a["kind"] == kind]


class _Sources:
    """Where each output comes from: the command a check of `kind` reads as `param`, run on
    master or on every node (as that check runs it)."""

    def __init__(self, lab: Lab, topo: Topology):
        self.lab, self.topo = lab, topo

    def command(self, kind: str, param: str) -> tuple[str, bool] | None:
        found = _uses(self.lab, kind)
        if not found:
            return None
        check, params = found[0]
        cmd = check.run[params[param]]
        return cmd.cmd, cmd.on_master

    def owner(self, kind: str) -> str:
        found = _uses(self.lab, kind)
        return found[0][0].id if found else ""

    def pairs(self) -> list[tuple[str, str]]:
        """Every (host, command) the map reads before the hostPath listings."""
        master = self.topo.control_plane.name
        pairs = []
        for kind, param in SOURCES:
            found = self.command(kind, param)
            if found:
                cmd, on_master = found
                hosts = [master] if on_master else [h.name for h in self.topo.hosts]
                pairs += [(h, cmd) for h in hosts]
        return pairs + [(h.name, LINKS) for h in self.topo.hosts]


SOURCES = (
    ("node-registered", "output"),
    ("pause-sandboxes", "pods"),
    ("pause-sandboxes", "containers"),
    ("weave-connections", "output"),
    ("service-rules", "services"),
    ("service-rules", "rules"),
    ("service-rules", "rejects"),
)


def build(lab: Lab, topo: Topology, commands: Commands, source: str = "live") -> Map:
    """The map of `lab` on the cluster `commands` reads (live, or a replayed bundle)."""
    src = _Sources(lab, topo)
    read = _Reader(commands)
    # Live, each command is one SSH round trip: ask them all at once, then read the cache.
    with ThreadPoolExecutor(8) as pool:
        for _ in pool.map(lambda hc: read.text(*hc), src.pairs()):
            pass
    read.unknown.clear()  # said again, in order, where each output is used below
    master = topo.control_plane.name

    def output(kind: str, param: str, host: str = master) -> str | None:
        found = src.command(kind, param)
        if found is None:
            read.note(f"lab {lab.id} has no {kind} check to read {param} from")
            return None
        cmd, on_master = found
        return read.text(master if on_master else host, cmd)

    listed = output("pause-sandboxes", "pods")
    pods = parse.pods(listed) if listed is not None else []
    registered = output("node-registered", "output")
    nodes = [_node(h, topo, pods, src, read, output) for h in topo.hosts]
    if registered is not None:
        listed_nodes = {n.name: n for n in parse.nodes(registered)}
        for node in nodes:
            found = listed_nodes.get(node.name)
            node.status = found.status if found else "not a node"
            if "Ready" not in node.status.split(","):
                node.fault = Fault(node.status, src.owner("node-registered"))
    services = _services(lab, topo, pods, src, output)
    volumes = _volumes(lab, topo, nodes, src, read, listed is not None)
    return Map(lab.id, lab.title, source, nodes, services, volumes, read.unknown)


def _node(host, topo, pods, src, read, output) -> Node:
    node = Node(host.name, host.node_ip, host.role)
    containers = output("pause-sandboxes", "containers", host.name)
    links = read.text(host.name, LINKS)
    veths = []
    if links is not None:
        bridge = next((x for x in parse.links(links) if x.name == WEAVE_BRIDGE), None)
        addr = next((str(a) for d, a in parse.addresses(links) if d == WEAVE_BRIDGE), "no IP")
        veths = [x.name for x in parse.links(links) if x.master == WEAVE_BRIDGE]
        node.bridge = (
            f"{WEAVE_BRIDGE} {addr} {'up' if bridge.up else 'DOWN'}, {len(veths)} ports"
            if bridge
            else f"no {WEAVE_BRIDGE} bridge"
        )
    for p in pods:
        if p.node != host.name:
            continue
        pod = Pod(p.namespace, p.name, p.ip, p.status, p.ready, p.node)
        if not p.is_ready:
            pod.fault = Fault(f"{p.status} {p.ready}", _pod_owner(src, p.namespace, p.name))
        if containers is not None:
            _sandbox(pod, parse.containers(containers), src)
        if links is not None and pod.pause:
            # weave's CNI plugin names the host end vethwepl<first chars of the sandbox id>
            pod.veth = next(
                (v for v in veths if v.startswith("vethwepl") and pod.pause.startswith(v[8:])),
                "",
            )
        node.pods.append(pod)
    conns = output("weave-connections", "output", host.name)
    if conns is not None:
        node.peers = []
        listed = parse.weave_connections(conns)
        for other in topo.hosts:
            if other.name == host.name:
                continue
            c = parse.weave_connection_to(listed, other.node_ip)
            state = c.state if c else "none"
            fault = None
            if state != "established":
                why = c.reason if c and state != "pending" else "no UDP heartbeat"
                fault = Fault(f"{state}: {why}", src.owner("weave-connections"))
            node.peers.append(Peer(other.name, other.node_ip, state, c.path if c else "", fault))
    return node


def _sandbox(pod: Pod, listed: list[parse.Container], src: _Sources) -> None:
    """The pod's pause sandbox and containers from the node's `docker ps`."""
    pauses = []
    for c in listed:
        k = parse.kubelet_name(c.name)
        if k is None or (k.pod, k.namespace) != (pod.name, pod.namespace):
            continue
        if k.container == "POD":
            pauses.append(c)
        else:
            pod.containers.append(Container(k.container, c.id, c.up))
    running = [c for c in pauses if c.up]
    pod.pause = running[0].id if running else ""
    if pod.status == "Running" and len(running) != 1 and pod.fault is None:
        pod.fault = Fault(f"{len(running)} running pause sandboxes", src.owner("pause-sandboxes"))


def _pod_owner(src: _Sources, namespace: str, name: str) -> str:
    """The check that grades this pod's readiness, as the lab's data says."""
    for check, a in _uses(src.lab, "pods-running"):
        named = name == a["name"] if a.get("name") else name.startswith(a.get("prefix", ""))
        if a["namespace"] == namespace and named:
            return check.id
    for kind in ("deployment-ready", "daemonset-ready"):
        for check, a in _uses(src.lab, kind):
            if name.startswith(f"{a['name']}-"):
                return check.id
    return ""


def _lab_objects(lab: Lab, topo: Topology, kind: str) -> list[tuple[dict, bool]]:
    """The lab's objects of `kind` (every step's), each with whether its step is optional."""
    found, seen = [], set()
    for step in lab.steps:
        for m in render_manifests(lab, topo, (step,)):
            key = (m.namespace or "default", m.name)
            if m.kind == kind and key not in seen:
                seen.add(key)
                found.append((m.obj, step.optional))
    return found


def _services(lab, topo, pods, src, output) -> list[Service]:
    wanted = [(*DNS_SERVICE, False)] + [
        (o["metadata"].get("namespace", "default"), o["metadata"]["name"], optional)
        for o, optional in _lab_objects(lab, topo, "Service")
    ]
    listed_text = output("service-rules", "services")
    listed = {(s.namespace, s.name): s for s in parse.services(listed_text or "")}
    owners = next((a.get("owners", {}) for _, a in _uses(lab, "service-rules")), {})
    rules_owner = src.owner("service-rules")
    nat = {h.name: output("service-rules", "rules", h.name) for h in topo.hosts}
    filt = {h.name: output("service-rules", "rejects", h.name) for h in topo.hosts}
    found = []
    for ns, name, optional in wanted:
        ref = f"{ns}/{name}"
        owner = owners.get(ref, rules_owner)
        svc = listed.get((ns, name))
        dns = f"{name}.{ns}.svc.{CLUSTER_DOMAIN}"
        if svc is None:
            if listed_text is not None and not optional:
                found.append(Service(ns, name, "", dns, [], Fault("not on the cluster", owner)))
            continue
        ports = [
            _chain(svc, port, proto, topo, pods, nat, filt, owner, rules_owner)
            for port, proto in svc.ports
        ]
        found.append(Service(ns, name, svc.cluster_ip, dns, ports))
    return found


def _chain(svc, port, proto, topo, pods, nat, filt, owner, rules_owner) -> ServicePort:
    """ClusterIP:port -> KUBE-SERVICES -> KUBE-SVC -> KUBE-SEP -> pod IP:port, as the nodes'
    nat tables hold it; the chain is the same on every node (its name hashes the port)."""
    key = (svc.cluster_ip, proto, port)
    chain, endpoints, nodes, missing, rejected = None, [], [], [], []
    for host in topo.hosts:
        text = nat[host.name]
        if text is None:
            continue
        jump = next(
            (
                r
                for r in parse.service_rules(text)
                if (r.ip, r.proto, r.port) == key and r.is_service_jump
            ),
            None,
        )
        if jump is None:
            rejects = parse.service_rules(filt[host.name] or "")
            if any((r.ip, r.proto, r.port) == key and r.target == "REJECT" for r in rejects):
                rejected.append(host.name)
            else:
                missing.append(host.name)
            continue
        nodes.append(host.name)
        if chain is None:
            chain = jump.target
            for e in parse.service_endpoints(text).get(chain, []):
                owners = [p for p in pods if p.ip == e.ip]
                by_ip = [h.name for h in topo.hosts if h.node_ip == e.ip]
                pod = owners[0] if len(owners) == 1 else None
                where = pod.node if pod else (by_ip[0] if by_ip else "?")
                endpoints.append(
                    Endpoint(
                        e.chain, e.ip, e.port, f"{pod.namespace}/{pod.name}" if pod else "", where
                    )
                )
    fault = None
    if rejected:
        fault = Fault(f"no ready endpoints: kube-proxy rejects it on {', '.join(rejected)}", owner)
    elif missing:
        fault = Fault(f"no KUBE-SERVICES rule on {', '.join(missing)}", rules_owner)
    elif chain is not None and not endpoints:
        fault = Fault("no endpoints in its chain", owner)
    return ServicePort(
        port, proto, chain or ("REJECT" if rejected else None), endpoints, nodes, fault
    )


def _volumes(lab, topo, nodes, src, read, pods_known: bool) -> list[Volume]:
    on_cluster = {p.ref: p for n in nodes for p in n.pods}
    found = []
    for obj, _ in _lab_objects(lab, topo, "Pod"):
        ns, name = obj["metadata"].get("namespace", "default"), obj["metadata"]["name"]
        ref = f"{ns}/{name}"
        spec = obj["spec"]
        for v in spec.get("volumes", []):
            kind = next((k for k in ("emptyDir", "hostPath") if k in v), None)
            if kind is None:
                continue
            mounts = [
                Mount(c["name"], m["mountPath"], bool(m.get("readOnly")))
                for c in spec["containers"]
                for m in c.get("volumeMounts", [])
                if m["name"] == v["name"]
            ]
            pod = on_cluster.get(ref)
            host_path = v["hostPath"]["path"] if kind == "hostPath" else ""
            vol = Volume(pod, ref, v["name"], kind, host_path, mounts)
            if pod is None and pods_known:
                vol.missing = Fault("not on the cluster", _pod_owner(src, ns, name))
            if pod and host_path:
                # exit 1: the folder holds no line of text (an empty file is still news)
                said = read.text(pod.node, f"grep -r . {shlex.quote(host_path)}", (0, 1))
                vol.files = said.splitlines() if said is not None else None
            found.append(vol)
    return found


def replayable_checks(lab: Lab, topo: Topology, commands: Commands) -> list[str]:
    """The checks whose every command the map ran: a map's bundle grades those."""
    master = topo.control_plane.name

    def ran(c: Check) -> bool:
        return all(
            (master if cmd.on_master else h.name, cmd.cmd) in commands.results
            for h in c.hosts(topo)
            for cmd in c.run.values()
        )

    return [c.id for c in lab.checks if ran(c)]
