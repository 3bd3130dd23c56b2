"""labctl against the three real hosts of the test bed: node preparation and the lab images.

No Kubernetes runs on the bed, so this drives `labctl apply ch09 --nodes-only` (hostPath file
on the workers, `docker build` of the count and simple-app images from the lab's contexts)
and then proves the built images behave, with `docker run --pull=never`. busybox:latest is
`docker import`ed from the bed's own tarball: nothing is ever pulled.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.testbed

WORKERS = ("slave1", "slave2")
LABCTL = str(Path(sys.executable).with_name("labctl"))


def must(testbed, host: str, cmd: str, timeout: float = 900) -> str:
    rc, out, err = testbed.ssh(host, cmd, timeout=timeout)
    assert rc == 0, f"{host}: {cmd}: exit {rc}: {err.strip()[-500:]}"
    return out


@pytest.fixture(scope="module")
def docker_bed(testbed):
    """Docker (Debian's docker.io, through the bed's apt proxy) and busybox:latest on the
    workers; what the provisioning deploy gives a real cluster's nodes."""
    testbed.ensure_all_up()
    for host in WORKERS:
        must(
            testbed,
            host,
            "command -v docker >/dev/null || { apt-get -qq update && "
            "DEBIAN_FRONTEND=noninteractive apt-get -qq install -y docker.io >/dev/null; }",
        )
        must(testbed, host, "systemctl start docker && docker info >/dev/null")
        must(
            testbed,
            host,
            "docker image inspect busybox:latest >/dev/null 2>&1 || "
            "docker import /opt/testbed/busybox-rootfs.tar busybox:latest",
        )
    return testbed


def labctl(testbed, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LABCTL, "--config", str(testbed.config), "--known-hosts", str(testbed.known_hosts), *args],
        capture_output=True,
        text=True,
        timeout=1800,
    )


def test_apply_nodes_only_prepares_workers_and_builds_images(docker_bed):
    for host in WORKERS:
        must(docker_bed, host, "rm -f /var/htdocs/index.html; docker rm -f count-t app-t || true")

    first = labctl(docker_bed, "apply", "ch09", "--nodes-only")
    assert first.returncode == 0, first.stderr + first.stdout
    for host in WORKERS:
        assert f"{host}: /var/htdocs/index.html holds the node's hostname" in first.stdout
        assert f"{host}: built k8s-lab/count:v1" in first.stdout
        assert f"{host}: built k8s-lab/simple-app:v1" in first.stdout
        hostname = must(docker_bed, host, "hostname").strip()
        assert must(docker_bed, host, "cat /var/htdocs/index.html") == hostname + "\n"

    again = labctl(docker_bed, "apply", "ch09", "--nodes-only", "--only", "hostpath")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count(": no changes") == len(WORKERS)

    # The count image, run as the pod would run it: writes the course's line, counts, and
    # stops at once on SIGTERM (docker stop) because count.sh is PID 1 with a trap.
    host = "slave1"
    must(docker_bed, host, "docker run -d --pull=never --name count-t k8s-lab/count:v1")
    out = must(docker_bed, host, "sleep 1; docker exec count-t cat /var/htdocs/index.html")
    assert out == "RUNNING loop seq 0\n"
    stop = must(
        docker_bed,
        host,
        "s=$(date +%s); docker stop -t 20 count-t >/dev/null; "
        "echo $(( $(date +%s) - s )) $(docker inspect -f '{{.State.ExitCode}}' count-t)",
    )
    seconds, code = stop.split()
    # Exit code 0 is the trap's (a kill after the 20 s grace gives 137); well under those 20 s,
    # with room for a loaded machine (7 s seen while a bench ran beside CI).
    assert code == "0" and int(seconds) < 15, stop
    must(docker_bed, host, "docker rm -f count-t")

    # The simple-app image answers like gurumee92/simple-app:v1.
    must(
        docker_bed,
        host,
        "docker run -d --pull=never --network host --name app-t k8s-lab/simple-app:v1",
    )
    answer = must(
        docker_bed,
        host,
        "for i in 1 2 3 4 5 6 7 8 9 10; do curl -s 127.0.0.1:8080 && break; "
        "sleep 0.5; done; docker rm -f app-t >/dev/null",
    )
    assert answer == "Hello World v1\n"


def test_verify_hostpath_file_passes_on_the_bed(docker_bed):
    # verify asks first whether master has a cluster (k8slab.cluster); none runs on the bed,
    # and this check reads only the workers' file: an empty admin.conf stands in for one.
    docker_bed.ssh("master", "mkdir -p /etc/kubernetes && touch /etc/kubernetes/admin.conf")
    try:
        result = labctl(docker_bed, "verify", "--only", "storage.hostpath-file", "--format", "json")
    finally:
        docker_bed.ssh("master", "rm -f /etc/kubernetes/admin.conf")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(result.stdout)["checks"]
    assert [(r["host"], r["status"]) for r in rows] == [(h, "pass") for h in WORKERS]
