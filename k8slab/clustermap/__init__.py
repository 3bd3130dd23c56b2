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
from k8slab.topology import Host, Topology

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


def _uses(lab: Lab, kind: str) -> list[tuple[Check, dict]]:
    return [(c, a) for c in lab.checks for a in c.expect if a["kind"] == kind]


# What the map reads of verify's commands: (assertion kind, the parameter naming the output).
SOURCES = (
    ("node-registered", "output"),
    ("pause-sandboxes", "pods"),
    ("pause-sandboxes", "containers"),
    ("weave-connections", "output"),
    ("service-rules", "services"),
    ("service-rules", "rules"),
    ("service-rules", "rejects"),
)


class _Cluster:
    """The lab's commands read through verify's shared cache: each output is found as the
    command a check of some kind reads (run on master or on the node, as that check runs
    it), and a read that fails becomes a line of `unknown` instead."""

    def __init__(self, lab: Lab, topo: Topology, commands: Commands):
        self.lab, self.topo, self.commands = lab, topo, commands
        self.master = topo.control_plane.name
        self.unknown: list[str] = []

    def note(self, why: str) -> None:
        if why not in self.unknown:
            self.unknown.append(why)

    def text(self, host: str, cmd: str, ok_codes: tuple[int, ...] = (0,)) -> str | None:
        try:
            r = self.commands(host, cmd)
        except SSHError as e:
            self.note(str(e))
            return None
        if r.exit_code in ok_codes:
            return r.stdout
        said = cause_line(r.stderr) or cause_line(r.stdout) or "no output"
        self.note(f"{host}: `{' '.join(cmd.split())[:60]}` exited {r.exit_code}: {said}")
        return None

    def _command(self, kind: str, param: str) -> tuple[str, bool] | None:
        found = _uses(self.lab, kind)
        if not found:
            return None
        check, params = found[0]
        cmd = check.run[params[param]]
        return cmd.cmd, cmd.on_master

    def output(self, kind: str, param: str, host: str = "") -> str | None:
        found = self._command(kind, param)
        if found is None:
            self.note(f"lab {self.lab.id} has no {kind} check to read {param} from")
            return None
        cmd, on_master = found
        return self.text(self.master if on_master else host or self.master, cmd)

    def owner(self, kind: str) -> str:
        found = _uses(self.lab, kind)
        return found[0][0].id if found else ""

    def pod_owner(self, namespace: str, name: str) -> str:
        """The check that grades this pod's readiness, as the lab's data says."""
        for check, a in _uses(self.lab, "pods-running"):
            named = name == a["name"] if a.get("name") else name.startswith(a.get("prefix", ""))
            if a["namespace"] == namespace and named:
                return check.id
        for kind in ("deployment-ready", "daemonset-ready"):
            for check, a in _uses(self.lab, kind):
                if name.startswith(f"{a['name']}-"):
                    return check.id
        return ""

    def prefetch(self) -> None:
        """Live, each command is one SSH round trip: ask them all at once (the hostPath
        listings, which need the pod list, come later). Failures are noted where used."""
        pairs = [(h.name, LINKS) for h in self.topo.hosts]
        for kind, param in SOURCES:
            found = self._command(kind, param)
            if found:
                cmd, on_master = found
                hosts = [self.master] if on_master else [h.name for h in self.topo.hosts]
                pairs += [(h, cmd) for h in hosts]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda hc: self.text(*hc), pairs))
        self.unknown.clear()


def build(lab: Lab, topo: Topology, commands: Commands, source: str = "live") -> Map:
    """The map of `lab` on the cluster `commands` reads (live, or a replayed bundle)."""
    c = _Cluster(lab, topo, commands)
    c.prefetch()
    listed = c.output("pause-sandboxes", "pods")
    pods = parse.pods(listed) if listed is not None else []
    registered = c.output("node-registered", "output")
    nodes = [_node(c, h, pods) for h in topo.hosts]
    if registered is not None:
        listed_nodes = {n.name: n for n in parse.nodes(registered)}
        for node in nodes:
            found = listed_nodes.get(node.name)
            node.status = found.status if found else "not a node"
            if "Ready" not in node.status.split(","):
                node.fault = Fault(node.status, c.owner("node-registered"))
    services = _services(c, pods)
    volumes = _volumes(c, nodes, pods_known=listed is not None)
    return Map(lab.id, lab.title, source, nodes, services, volumes, c.unknown)


def _node(c: _Cluster, host: Host, pods: list[parse.Pod]) -> Node:
    node = Node(host.name, host.node_ip, host.role)
    containers = c.output("pause-sandboxes", "containers", host.name)
    links = c.text(host.name, LINKS)
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
            pod.fault = Fault(f"{p.status} {p.ready}", c.pod_owner(p.namespace, p.name))
        if containers is not None:
            _sandbox(c, pod, parse.containers(containers))
        if links is not None and pod.pause:
            # weave's CNI plugin names the host end vethwepl<first chars of the sandbox id>
            pod.veth = next(
                (v for v in veths if v.startswith("vethwepl") and pod.pause.startswith(v[8:])),
                "",
            )
        node.pods.append(pod)
    conns = c.output("weave-connections", "output", host.name)
    if conns is not None:
        node.peers = []
        listed = parse.weave_connections(conns)
        for other in c.topo.hosts:
            if other.name == host.name:
                continue
            w = parse.weave_connection_to(listed, other.node_ip)
            state = w.state if w else "none"
            fault = None
            if state != "established":
                why = w.reason if w and state != "pending" else "no UDP heartbeat"
                fault = Fault(f"{state}: {why}", c.owner("weave-connections"))
            node.peers.append(Peer(other.name, other.node_ip, state, w.path if w else "", fault))
    return node


def _sandbox(c: _Cluster, pod: Pod, listed: list[parse.Container]) -> None:
    """The pod's pause sandbox and containers from the node's `docker ps`."""
    pauses = []
    for x in listed:
        k = parse.kubelet_name(x.name)
        if k is None or (k.pod, k.namespace) != (pod.name, pod.namespace):
            continue
        if k.container == "POD":
            pauses.append(x)
        else:
            pod.containers.append(Container(k.container, x.id, x.up))
    running = [x for x in pauses if x.up]
    pod.pause = running[0].id if running else ""
    if pod.status == "Running" and len(running) != 1 and pod.fault is None:
        pod.fault = Fault(f"{len(running)} running pause sandboxes", c.owner("pause-sandboxes"))


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


def _services(c: _Cluster, pods: list[parse.Pod]) -> list[Service]:
    wanted = [(*DNS_SERVICE, False)] + [
        (o["metadata"].get("namespace", "default"), o["metadata"]["name"], optional)
        for o, optional in _lab_objects(c.lab, c.topo, "Service")
    ]
    listed_text = c.output("service-rules", "services")
    listed = {(s.namespace, s.name): s for s in parse.services(listed_text or "")}
    owners = next((a.get("owners", {}) for _, a in _uses(c.lab, "service-rules")), {})
    tables = {
        h.name: (
            c.output("service-rules", "rules", h.name),
            c.output("service-rules", "rejects", h.name),
        )
        for h in c.topo.hosts
    }
    found = []
    for ns, name, optional in wanted:
        owner = owners.get(f"{ns}/{name}", c.owner("service-rules"))
        svc = listed.get((ns, name))
        dns = f"{name}.{ns}.svc.{CLUSTER_DOMAIN}"
        if svc is None:
            if listed_text is not None and not optional:
                found.append(Service(ns, name, "", dns, [], Fault("not on the cluster", owner)))
            continue
        ports = [
            _chain(c, pods, tables, (svc.cluster_ip, proto, port), owner)
            for port, proto in svc.ports
        ]
        found.append(Service(ns, name, svc.cluster_ip, dns, ports))
    return found


def _chain(
    c: _Cluster,
    pods: list[parse.Pod],
    tables: dict[str, tuple[str | None, str | None]],
    key: tuple[str, str, int],
    owner: str,
) -> ServicePort:
    """ClusterIP:port -> KUBE-SERVICES -> KUBE-SVC -> KUBE-SEP -> pod IP:port, as the nodes'
    nat tables hold it (`tables`: each node's nat and filter rules); the chain is the same
    on every node (its name hashes the port)."""
    chain, endpoints, nodes, missing, rejected = None, [], [], [], []
    for host in c.topo.hosts:
        nat, filt = tables[host.name]
        if nat is None:
            continue
        rules = parse.service_rules(nat)
        jump = next(
            (r for r in rules if (r.ip, r.proto, r.port) == key and r.is_service_jump), None
        )
        if jump is None:
            rejects = parse.service_rules(filt or "")
            if any((r.ip, r.proto, r.port) == key and r.target == "REJECT" for r in rejects):
                rejected.append(host.name)
            else:
                missing.append(host.name)
            continue
        nodes.append(host.name)
        if chain is None:
            chain = jump.target
            endpoints = [_endpoint(c, pods, e) for e in parse.service_endpoints(nat).get(chain, [])]
    fault = None
    if rejected:
        fault = Fault(f"no ready endpoints: kube-proxy rejects it on {', '.join(rejected)}", owner)
    elif missing:
        fault = Fault(f"no KUBE-SERVICES rule on {', '.join(missing)}", c.owner("service-rules"))
    elif chain is not None and not endpoints:
        fault = Fault("no endpoints in its chain", owner)
    _, proto, port = key
    return ServicePort(
        port, proto, chain or ("REJECT" if rejected else None), endpoints, nodes, fault
    )


def _endpoint(c: _Cluster, pods: list[parse.Pod], e: parse.ServiceEndpoint) -> Endpoint:
    """The pod behind a KUBE-SEP chain, by its IP (a host-network IP names the node)."""
    having = [p for p in pods if p.ip == e.ip]
    if len(having) == 1:
        pod = having[0]
        return Endpoint(e.chain, e.ip, e.port, f"{pod.namespace}/{pod.name}", pod.node)
    node = next((h.name for h in c.topo.hosts if h.node_ip == e.ip), "?")
    return Endpoint(e.chain, e.ip, e.port, "", node)


def _volumes(c: _Cluster, nodes: list[Node], pods_known: bool) -> list[Volume]:
    on_cluster = {p.ref: p for n in nodes for p in n.pods}
    found = []
    for obj, _ in _lab_objects(c.lab, c.topo, "Pod"):
        ns, name = obj["metadata"].get("namespace", "default"), obj["metadata"]["name"]
        ref = f"{ns}/{name}"
        spec = obj["spec"]
        for v in spec.get("volumes", []):
            kind = next((k for k in ("emptyDir", "hostPath") if k in v), None)
            if kind is None:
                continue
            mounts = [
                Mount(x["name"], m["mountPath"], bool(m.get("readOnly")))
                for x in spec["containers"]
                for m in x.get("volumeMounts", [])
                if m["name"] == v["name"]
            ]
            pod = on_cluster.get(ref)
            host_path = v["hostPath"]["path"] if kind == "hostPath" else ""
            vol = Volume(pod, ref, v["name"], kind, host_path, mounts)
            if pod is None and pods_known:
                vol.missing = Fault("not on the cluster", c.pod_owner(ns, name))
            if pod and host_path:
                # exit 1: the folder holds no line of text (an empty file is still news)
                said = c.text(pod.node, f"grep -r . {shlex.quote(host_path)}", (0, 1))
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
