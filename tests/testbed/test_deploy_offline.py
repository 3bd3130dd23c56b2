"""Phases 1-2 (host prep, Docker) for real on the test-bed hosts, with no registry pulls.

First run converges, second run changes nothing, a reboot keeps the settings, a host that is
down makes the run fail naming it, and once it is back a re-run converges.
"""

import io
import json
import re
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from . import artifacts, bed

pytestmark = pytest.mark.testbed

PHASES = ("deploys/hostprep.py", "deploys/docker.py")
NODES = {"master": "10.0.2.15", "slave1": "10.0.2.4", "slave2": "10.0.2.5"}
FAKE_SWAP = "/swap.img none swap sw 0 0"


def changes(output: str) -> dict[str, int]:
    """Operations pyinfra 3 reports as changed ("[host] Success"), per host."""
    counts = {h: 0 for h in NODES}
    for m in re.finditer(r"^\s*\[(\S+)\] Success\s*$", output, re.M):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


def grand_total(output: str) -> dict[str, str]:
    m = re.search(r"^\s*Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$", output, re.M)
    assert m, f"no 'Grand total' line in pyinfra's output:\n{output[-3000:]}"
    return dict(zip(("hosts", "success", "error", "no_change"), m.groups(), strict=True))


def deploy(testbed):
    t0 = time.monotonic()
    r = testbed.pyinfra(*PHASES)
    r.elapsed = time.monotonic() - t0
    r.output = r.stdout + r.stderr
    return r


def busybox_ok(testbed, host):
    testbed.ssh(
        host,
        "docker image inspect busybox:latest >/dev/null 2>&1 || "
        "docker import /opt/testbed/busybox-rootfs.tar busybox:latest",
    )
    return testbed.ssh(host, "docker run --rm --pull=never busybox:latest echo ok", timeout=120)


@pytest.fixture(scope="module")
def first_run(testbed):
    tb = testbed
    tb.ensure_all_up()
    for h in tb.hosts:  # the course's VMs have swap in fstab; the deploy must comment it out
        tb.ssh(h, f"grep -qxF '{FAKE_SWAP}' /etc/fstab || echo '{FAKE_SWAP}' >> /etc/fstab")
    r = deploy(tb)
    print(f"first run: {r.elapsed:.1f}s")
    assert r.returncode == 0, r.output[-5000:]
    return r


def test_first_run_converges(first_run):
    assert grand_total(first_run.output)["error"] == "-"
    assert sum(changes(first_run.output).values()) > 0


@pytest.mark.parametrize("host", list(NODES))
def test_hostname_and_etc_hosts(testbed, first_run, host):
    assert testbed.ssh(host, "hostname")[1].strip() == host
    hosts = testbed.ssh(host, "cat /etc/hosts")[1]
    for name, ip in NODES.items():
        assert re.search(rf"^{re.escape(ip)}\s+.*\b{name}\b", hosts, re.M), hosts


@pytest.mark.parametrize("host", list(NODES))
def test_swap_off_and_out_of_fstab(testbed, first_run, host):
    assert len(testbed.ssh(host, "cat /proc/swaps")[1].strip().splitlines()) == 1
    fstab = testbed.ssh(host, "cat /etc/fstab")[1]
    live = [x for x in fstab.splitlines() if x.strip() and not x.lstrip().startswith("#")]
    assert not [x for x in live if re.search(r"\sswap\s", x)], fstab


@pytest.mark.parametrize("host", list(NODES))
def test_modules_and_sysctls(testbed, first_run, host):
    rc, out, err = testbed.ssh(host, "cat /etc/modules-load.d/*.conf")
    assert rc == 0 and "br_netfilter" in out and "overlay" in out, out + err
    rc, out, err = testbed.ssh(host, "cat /etc/sysctl.d/*.conf")
    assert "net.ipv4.ip_forward" in out and "net.bridge.bridge-nf-call-iptables" in out
    rc, out, _ = testbed.ssh(
        host, "sysctl -n net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables"
    )
    assert out.split() == ["1", "1"]


@pytest.mark.parametrize("host", list(NODES))
def test_docker_systemd_driver_and_local_image(testbed, first_run, host):
    assert testbed.ssh(host, "systemctl is-active docker")[1].strip() == "active"
    assert testbed.ssh(host, "docker info -f '{{.CgroupDriver}}'")[1].strip() == "systemd"
    rc, out, err = busybox_ok(testbed, host)
    assert rc == 0 and out.strip() == "ok", err


def test_second_run_changes_nothing(testbed, first_run):
    r = deploy(testbed)
    print(f"no-op run: {r.elapsed:.1f}s")
    assert r.returncode == 0, r.output[-5000:]
    assert changes(r.output) == {h: 0 for h in NODES}, r.output[-5000:]
    total = grand_total(r.output)
    assert total["success"] == "-" and total["error"] == "-", total


def images_phase(testbed, folder: Path) -> subprocess.CompletedProcess:
    """`pyinfra deploys/images.py` with the bed's topology plus image_archives: folder."""
    topo = yaml.safe_load(Path(testbed.config).read_text())
    topo["image_archives"] = str(folder)
    config = folder.parent / "lab.yaml"
    config.write_text(yaml.safe_dump(topo))
    r = type(testbed)(config).pyinfra("deploys/images.py", timeout=600)
    r.output = r.stdout + r.stderr
    return r


def test_image_archives_stream_into_docker_without_a_copy_on_disk(testbed, first_run, tmp_path):
    tag = "k8s-lab-test/streamed:1"
    for h in NODES:
        testbed.ssh(h, f"docker rmi -f {tag} >/dev/null 2>&1; true")
    (tmp_path / "images").mkdir()
    archive = artifacts.docker_save(
        tmp_path / "images" / "streamed.tar", tag, bed.busybox_tar(), ["/bin/sh"]
    )
    r = images_phase(testbed, tmp_path / "images")
    assert r.returncode == 0, r.output[-5000:]
    assert f"docker load {tag} (streamed from {archive})" in r.output
    for h in NODES:
        listed = testbed.ssh(h, f"docker images --format '{{{{.Repository}}}}:{{{{.Tag}}}}' {tag}")[
            1
        ]
        assert listed.split() == [tag], (h, listed)
        rc, echoed, err = testbed.ssh(h, f"docker run --rm --pull=never {tag} echo streamed")
        assert rc == 0 and echoed.strip() == "streamed", (h, err)
        assert testbed.ssh(h, "ls -A /var/cache/k8s-lab/images 2>/dev/null")[1].strip() == ""
    again = images_phase(testbed, tmp_path / "images")
    assert again.returncode == 0 and changes(again.output) == {h: 0 for h in NODES}, again.output


def test_labctl_apply_streams_an_archive_a_node_lacks(testbed, first_run, tmp_path):
    from k8slab.apply import load_archives
    from k8slab.ssh import Fleet
    from k8slab.topology import load

    tag = "k8s-lab-test/applied:1"
    testbed.ssh("slave1", f"docker rmi -f {tag} >/dev/null 2>&1; true")
    (tmp_path / "images").mkdir()
    artifacts.docker_save(tmp_path / "images" / "applied.tar", tag, bed.busybox_tar(), ["/bin/sh"])
    raw = yaml.safe_load(Path(testbed.config).read_text())
    raw["image_archives"] = str(tmp_path / "images")
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(raw))
    topo = load(tmp_path / "lab.yaml")
    said: list[str] = []
    slave1 = [h for h in topo.hosts if h.name == "slave1"]
    with Fleet(topo.hosts, known_hosts=testbed.known_hosts) as fleet:
        load_archives(topo, fleet, slave1, said.append)
        load_archives(topo, fleet, slave1, said.append)
    assert said == [
        "slave1: docker load applied.tar ...",
        "slave1: image archives: 1 loaded, 0 present",
        "slave1: image archives: 0 loaded, 1 present",
    ]
    rc, echoed, err = testbed.ssh("slave1", f"docker run --rm --pull=never {tag} echo applied")
    assert rc == 0 and echoed.strip() == "applied", err


def test_a_broken_archive_fails_naming_dockers_reason(testbed, first_run, tmp_path):
    (tmp_path / "images").mkdir()
    manifest = [{"Config": "missing.json", "RepoTags": ["k8s-lab-test/broken:1"], "Layers": []}]
    data = json.dumps(manifest).encode()
    with tarfile.open(tmp_path / "images" / "broken.tar", "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    r = images_phase(testbed, tmp_path / "images")
    assert r.returncode != 0, r.output[-3000:]
    assert "docker load of broken.tar failed: " in r.output, r.output[-3000:]


def test_reboot_keeps_settings(testbed, first_run):
    testbed.reboot("slave1")
    assert len(testbed.ssh("slave1", "cat /proc/swaps")[1].strip().splitlines()) == 1
    out = testbed.ssh("slave1", "sysctl -n net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables")[
        1
    ]
    assert out.split() == ["1", "1"]
    assert testbed.ssh("slave1", "hostname")[1].strip() == "slave1"
    assert testbed.ssh("slave1", "systemctl is-active docker")[1].strip() == "active"
    rc, out, err = busybox_ok(testbed, "slave1")
    assert rc == 0 and out.strip() == "ok", err


def test_host_down_fails_naming_it_then_converges(testbed, first_run):
    testbed.stop("slave2", hard=True)
    try:
        r = deploy(testbed)
        assert r.returncode != 0, r.output[-5000:]
        assert re.search(r"^\s*\[slave2\] Could not connect", r.output, re.M), r.output[-5000:]
        for up in ("master", "slave1"):  # the others are still deployed
            assert f"[{up}] Could not connect" not in r.output
    finally:
        testbed.start("slave2")
    r = deploy(testbed)
    assert r.returncode == 0, r.output[-5000:]
    r = deploy(testbed)
    assert r.returncode == 0 and changes(r.output) == {h: 0 for h in NODES}, r.output[-5000:]


def test_install_cut_off_mid_way_is_finished_by_the_next_run(testbed, first_run):
    # What a host that lost power during `apt-get install` leaves: a dpkg journal entry,
    # after which apt refuses every install ("dpkg was interrupted").
    testbed.ssh("slave1", "touch /var/lib/dpkg/updates/0000")
    rc, out, _ = testbed.ssh("slave1", "apt-get install -y -q socat 2>&1")
    assert rc != 0 and "dpkg was interrupted" in out
    r = deploy(testbed)
    assert r.returncode == 0, r.output[-5000:]
    assert "Finish the install an earlier run left half-done" in r.output
    assert testbed.ssh("slave1", "ls -A /var/lib/dpkg/updates")[1].strip() == ""
    r = deploy(testbed)
    assert r.returncode == 0 and changes(r.output) == {h: 0 for h in NODES}, r.output[-5000:]


def test_host_shut_down_mid_deploy_fails_naming_it_then_converges(testbed, first_run):
    # Give slave2 real work in the Docker phase, then shut it down while that phase runs.
    rc, _, err = testbed.ssh("slave2", "apt-get purge -y -q docker.io >/dev/null", timeout=300)
    assert rc == 0, err
    proc = subprocess.Popen(
        [testbed.pyinfra_exe(), "-y", "inventory/lab.py", *PHASES],
        cwd=testbed.repo,
        env=testbed.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "Starting operation: Docker Engine | Install Docker Engine" in line:
                testbed.stop("slave2")
                break
        lines.extend(proc.stdout)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        testbed.start("slave2")
    output = "".join(lines)
    assert proc.returncode != 0, output[-5000:]
    # Cut during a command, pyinfra says "[slave2] Error ..."; cut between two commands,
    # pyinfra 3.10 itself crashes (EOFError opening the next channel, not caught upstream)
    # and names the host only in its traceback. Either way the run fails, naming slave2.
    named = re.search(r"^\s*\[slave2\] .*(Error|error)", output, re.M) or re.search(
        r"Host\(slave2\).* failed with EOFError", output
    )
    assert named, output[-5000:]
    assert not re.search(r"^\s*\[(master|slave1)\] .*(Error|error)", output, re.M)
    r = deploy(testbed)
    assert r.returncode == 0, r.output[-5000:]
    rc, out, err = busybox_ok(testbed, "slave2")
    assert rc == 0 and out.strip() == "ok", err
    r = deploy(testbed)
    assert r.returncode == 0 and changes(r.output) == {h: 0 for h in NODES}, r.output[-5000:]
