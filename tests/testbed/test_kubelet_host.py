"""What kubelet needs of a host and systemd-nspawn does not give, provided by the bed's own
set-up (k8slab/machines: base.py, nspawn.py; never the deploy). Each was found by a
real failure of kubelet or of a pod sandbox in the bed; each check here fails without its fix
and needs no Kubernetes.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.testbed

HOSTS = ("master", "slave1", "slave2")
# kubelet's setupKernelTunables wants exactly these (pkg/kubelet/cm/container_manager_linux.go).
TUNABLES = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}


@pytest.mark.parametrize("host", HOSTS)
def test_dev_kmsg_is_the_kernel_log_and_opens(testbed, host):
    # kubelet exits without /dev/kmsg (its OOM watcher reads it); nspawn gives none, and
    # the host needs CAP_SYSLOG (supervise.py) for it to be of use.
    rc, out, err = testbed.ssh(
        host,
        "stat -c '%F %t:%T' /dev/kmsg && python3 -c \"import os; "
        "fd = os.open('/dev/kmsg', os.O_RDONLY | os.O_NONBLOCK); "
        'print(len(os.read(fd, 8192)) > 0)"',
    )
    assert rc == 0, err
    assert out.split("\n")[:2] == ["character special file 1:b", "True"]


@pytest.mark.parametrize("host", HOSTS)
def test_kernel_tunables_read_what_kubelet_wants(testbed, host):
    keys = " ".join(f"/proc/sys/{k}" for k in TUNABLES)
    rc, out, err = testbed.ssh(host, f"cat {keys}")
    assert rc == 0, err
    assert dict(zip(TUNABLES, out.split(), strict=True)) == TUNABLES


@pytest.mark.parametrize("host", HOSTS)
def test_a_container_with_a_negative_oom_score_adj_runs(docker_hosts, host):
    # cri-dockerd asks -998 for every pod sandbox; this machine gives no CAP_SYS_RESOURCE, so
    # plain runc fails with "can't get final child's PID from pipe: EOF".
    rc, out, err = docker_hosts.ssh(
        host,
        "docker run --rm --pull=never --oom-score-adj=-998 busybox:latest "
        "cat /proc/self/oom_score_adj",
        timeout=120,
    )
    assert rc == 0, err
    assert out.strip() == "0"  # clamped by the bed's runtime
    rc, out, err = docker_hosts.ssh(
        host,
        "docker run --rm --pull=never --oom-score-adj=500 busybox:latest "
        "cat /proc/self/oom_score_adj",
    )
    assert (rc, out.strip()) == (0, "500"), err  # only negative values are touched


def test_the_runtime_is_registered_beside_the_products_daemon_json(docker_hosts):
    rc, out, err = docker_hosts.ssh("slave1", "docker info -f '{{.DefaultRuntime}}'")
    assert (rc, out.strip()) == (0, "k8s-lab-machine"), err
    daemon = json.loads(docker_hosts.ssh("slave1", "cat /etc/docker/daemon.json")[1])
    assert "default-runtime" not in daemon and "runtimes" not in daemon


@pytest.mark.parametrize("host", HOSTS)
def test_a_privileged_container_runs(docker_hosts, host):
    # kube-proxy and weave run privileged: Docker grants every capability it knows, some of
    # which nspawn's bounding set lacks, and plain runc fails "unable to apply caps".
    rc, out, err = docker_hosts.ssh(
        host,
        "docker run --rm --pull=never --privileged busybox:latest grep CapEff /proc/self/status",
        timeout=120,
    )
    assert rc == 0, err
    assert out.startswith("CapEff:"), out


@pytest.mark.parametrize("host", HOSTS)
def test_service_ips_are_routable_and_stay_on_the_bridge(testbed, host):
    # Host-network pods (weave) reach the API at 10.96.0.1 before kube-proxy's DNAT; with no
    # route connect() fails "network is unreachable". The default route is on-link: no
    # gateway, so nothing that escapes the DNAT leaves the bridge.
    rc, out, err = testbed.ssh(host, "ip route get 10.96.0.1")
    assert rc == 0, err
    assert "dev host0" in out and " via " not in out, out
