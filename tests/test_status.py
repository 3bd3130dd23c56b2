"""labctl status from recorded outputs only: no cluster runs here (the test bed has no
Kubernetes). The outputs are shaped like kubectl 1.35's and Weave 2.9's status page; the
bundle is written by the code `labctl status --record` uses and shown by the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from conftest import COURSE_TOPOLOGY

from k8slab import status, topology
from k8slab.checks import bundle
from k8slab.checks.engine import Commands
from k8slab.cli import main
from k8slab.labs import load_lab, render_manifests
from k8slab.ssh import Result

# Columns as kubectl aligns them: each as wide as its widest cell plus three spaces.
NODES = """\
NAME     STATUS     ROLES           AGE   VERSION   INTERNAL-IP   EXTERNAL-IP   OS-IMAGE                         KERNEL-VERSION     CONTAINER-RUNTIME
master   Ready      control-plane   41m   v1.35.0   10.0.2.15     <none>        Ubuntu 24.04.1 LTS               6.8.0-49-generic   docker://27.3.1
slave1   Ready      <none>          38m   v1.35.0   10.0.2.4      <none>        Ubuntu 24.04.1 LTS               6.8.0-49-generic   docker://27.3.1
slave2   NotReady   <none>          38m   v1.35.0   10.0.2.5      <none>        Debian GNU/Linux 12 (bookworm)   6.1.0-27-amd64     docker://20.10.24+dfsg1
"""  # noqa: E501


def weave_page(name: str, established: int, total: int) -> str:
    return f"""\
        Version: 2.9.0 (failed to check latest version - see logs; next check at 2026/11/27 14:10:11)

        Service: router
       Protocol: weave 1..2
           Name: 62:1d:5a:0e:3b:aa({name})
     Encryption: disabled
  PeerDiscovery: enabled
        Targets: 2
    Connections: {total} ({established} established)
          Peers: 3 (with {2 * established + 2} established connections)
 TrustedSubnets: none

        Service: ipam
         Status: ready
          Range: 10.32.0.0/12
  DefaultSubnet: 10.32.0.0/12
"""  # noqa: E501


def write(directory: Path, edits: dict | None = None) -> Path:
    topo = topology.load(COURSE_TOPOLOGY)
    lab = load_lab("ch09", topo)
    out: dict[tuple[str, str], Result] = {
        ("master", "kubectl get nodes -o wide"): Result(NODES, "", 0),
        ("master", status.WEAVE_STATUS): Result(weave_page("master", 2, 2), "", 0),
        ("slave1", status.WEAVE_STATUS): Result(weave_page("slave1", 1, 2), "", 0),
        ("slave2", status.WEAVE_STATUS): Result("", "", 7),  # curl: connection refused
    }
    present = {
        "gurumee": "gurumee   Active   12m",
        "simple-app-dep": "simple-app-dep   3/3   3   3   12m",
        "simple-app-svc": "simple-app-svc   ClusterIP   10.100.23.7   <none>   8080/TCP   12m",
        "nginx": "nginx   1/1   Running   0   12m",
    }
    for m in render_manifests(lab, topo):
        ns = "" if m.kind == "Namespace" else f" -n {m.namespace or 'default'}"
        cmd = f"kubectl get {m.kind.lower()}/{m.name}{ns} --no-headers --ignore-not-found"
        out[("master", cmd)] = Result(present.get(m.name, "") + "\n", "", 0)
    out.update(edits or {})
    commands = Commands(lambda host, cmd: out[(host, cmd)])
    for host, cmd in out:
        commands(host, cmd)
    bundle.write(directory, "status", ["ch09"], topo, commands)
    return directory


def test_status_table_from_recorded_outputs(tmp_path):
    r = CliRunner().invoke(main, ["status", "--replay", str(write(tmp_path / "b"))])
    assert r.exit_code == 0, r.output
    lines = [line.rstrip() for line in r.output.splitlines()]
    assert "  master  Ready     v1.35.0  10.0.2.15    docker://27.3.1" in lines
    assert "  slave2  NotReady  v1.35.0  10.0.2.5     docker://20.10.24+dfsg1" in lines
    assert "  master: 2 of 2 connections established, 3 peers" in lines
    assert "  slave1: 1 of 2 connections established, 3 peers  <- expected 2 established" in lines
    assert "  slave2: no weave status on :6784 (curl exited 7)" in lines
    assert "  namespace/gurumee: gurumee Active 12m" in lines
    assert "  deployment/simple-app-dep -n gurumee: simple-app-dep 3/3 3 3 12m" in lines
    assert "  pod/volume-hostpath -n default: not found" in lines


def test_status_json(tmp_path):
    r = CliRunner().invoke(
        main, ["status", "--replay", str(write(tmp_path / "b")), "--format", "json"]
    )
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert [n["name"] for n in data["nodes"]] == ["master", "slave1", "slave2"]
    assert data["nodes"][2]["status"] == "NotReady"
    assert [(w["host"], w["established"]) for w in data["weave"]] == [
        ("master", 2),
        ("slave1", 1),
        ("slave2", None),
    ]
    assert {o["ref"]: o["present"] for o in data["objects"]}["pod/nginx -n default"] is True


def test_status_when_the_api_server_is_down(tmp_path):
    down = Result(
        "",
        "The connection to the server 10.0.2.15:6443 was refused - did you specify the right "
        "host or port?\n",
        1,
    )
    r = CliRunner().invoke(
        main,
        [
            "status",
            "--replay",
            str(write(tmp_path / "b", {("master", "kubectl get nodes -o wide"): down})),
        ],
    )
    assert r.exit_code == 0, r.output
    assert (
        "  cannot list nodes: The connection to the server 10.0.2.15:6443 was refused" in r.output
    )
    assert "  slave1  (not registered)" in r.output
