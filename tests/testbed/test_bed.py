"""Smoke test of the test bed itself: what the deploy tests take for granted."""

import pytest

pytestmark = pytest.mark.testbed

PROXY = "http://10.0.2.1:3142"


def test_topology_file_loads(testbed):
    from k8slab.topology import load

    topo = load(testbed.config)
    assert [h.name for h in topo.hosts] == ["master", "slave1", "slave2"]
    assert topo.control_plane.node_ip == "10.0.2.15"
    assert topo.docker_source == "distro"


@pytest.mark.parametrize("host", ["master", "slave1", "slave2"])
def test_ssh_as_gurumee_and_passwordless_sudo(testbed, host):
    rc, out, err = testbed.ssh_user(host, "id -un && sudo -n id -u")
    assert rc == 0, err
    assert out.split() == ["gurumee", "0"]


@pytest.mark.parametrize("host", ["master", "slave1", "slave2"])
def test_own_ip_and_no_gateway(testbed, host):
    ip = testbed.ips[host]
    rc, out, err = testbed.ssh(host, "ip -o -4 addr show dev host0; echo ---; ip route")
    assert rc == 0, err
    addrs, routes = out.split("---")
    assert f"inet {ip}/24" in addrs
    # the default route is on-link (Service IPs before DNAT): no gateway, no way out
    assert any(r.startswith("default dev host0 ") for r in routes.splitlines()), routes
    assert " via " not in routes, routes


def test_machine_ids_differ(testbed):
    ids = {testbed.ssh(h, "cat /etc/machine-id")[1].strip() for h in testbed.hosts}
    assert len(ids) == 3 and all(len(i) == 32 for i in ids)


@pytest.mark.parametrize("host", ["master", "slave1", "slave2"])
def test_hosts_reach_each_other_on_ssh(testbed, host):
    for other, ip in testbed.ips.items():
        if other == host:
            continue
        probe = f"timeout 5 bash -c 'exec 3<>/dev/tcp/{ip}/22 && head -c 4 <&3'"
        rc, out, err = testbed.ssh(host, probe)
        assert rc == 0 and out.startswith("SSH-"), f"{host} -> {other} ({ip}): {out!r} {err}"


def test_apt_update_through_proxy(testbed):
    rc, out, err = testbed.ssh("slave1", "apt-get update", timeout=300)
    assert rc == 0, out + err
    assert "Err:" not in out


def test_proxy_refuses_other_hosts_and_connect(testbed):
    # a made-up name: the proxy answers 403 itself and never resolves or contacts it
    rc, out, err = testbed.ssh(
        "master",
        f"curl -s -o /dev/null -w '%{{http_code}}' -x {PROXY} http://no-such-host.invalid/",
    )
    assert out.strip() == "403", (rc, out, err)
    rc, out, err = testbed.ssh(
        "master",
        f"curl -s -o /dev/null -w '%{{http_code}}' -X POST -x {PROXY} http://no-such-host.invalid/",
    )
    assert out.strip() == "403", (rc, out, err)
    rc, out, err = testbed.ssh(
        "master",
        f"curl -s -o /dev/null -w '%{{http_connect}}' -x {PROXY} https://no-such-host.invalid/",
    )
    assert rc != 0 and out.strip() == "403", (rc, out, err)


@pytest.mark.parametrize("host", ["master", "slave1", "slave2"])
def test_modprobe_builtin_modules(testbed, host):
    rc, out, err = testbed.ssh(host, "modprobe br_netfilter && modprobe overlay && echo ok")
    assert rc == 0 and "ok" in out, err


def test_net_sysctls_are_per_host(testbed):
    # Whatever an earlier deploy set: each host keeps its own value.
    before = {
        h: testbed.ssh(h, "sysctl -n net.ipv4.ip_forward")[1].strip() for h in ("slave1", "slave2")
    }
    try:
        testbed.ssh("slave1", "sysctl -w net.ipv4.ip_forward=0")
        rc, _, err = testbed.ssh("slave2", "sysctl -w net.ipv4.ip_forward=1")
        assert rc == 0, err
        assert testbed.ssh("slave2", "sysctl -n net.ipv4.ip_forward")[1].strip() == "1"
        assert testbed.ssh("slave1", "sysctl -n net.ipv4.ip_forward")[1].strip() == "0"
    finally:
        for h, value in before.items():
            testbed.ssh(h, f"sysctl -w net.ipv4.ip_forward={value}")


def test_stop_start_and_reboot(all_up):
    tb = all_up
    tb.ssh("slave2", "echo persisted > /root/marker")
    tb.reboot("slave2")
    rc, out, _ = tb.ssh("slave2", "cat /root/marker")
    assert rc == 0 and out.strip() == "persisted"
    tb.stop("slave2", hard=True)
    assert not tb.running("slave2")
    rc, _, _ = tb.ssh("slave2", "true", timeout=15)
    assert rc != 0
    tb.start("slave2")
    rc, out, _ = tb.ssh("slave2", "cat /root/marker")
    assert rc == 0 and out.strip() == "persisted"
