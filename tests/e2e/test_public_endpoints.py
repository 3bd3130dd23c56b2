"""The path almost every learner takes: the shipped topology with no source keys, so packages
come from pkgs.k8s.io and Docker's repository, cri-dockerd from its GitHub release and every
image from registry.k8s.io and Docker Hub, here stand-ins of them on the bed (standins.py).

The topology is inventory/lab.yaml with what `labctl machines` adds for these container hosts
(SSH user and key, allow_cgroup_v1, kube_proxy_tune_conntrack: false, weave_fastdp: false), and
without its `docker_source: distro`: no download-source key at all. The steps build on each
other: doctor's `sources` passes, and fails naming exactly the URLs of a stopped stand-in; bare
hosts to three Ready nodes with every image pulled; a re-run changes nothing; `labctl apply ch09`
pulls the lab's images; `labctl verify` passes every check. Outputs and figures (seconds, bytes
each host took from each stand-in) go to $K8SLAB_E2E_OUT/public-endpoints.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml
from testbed import bed

from k8slab.topology import DEFAULTS, load

from . import runs, standins
from .runs import kubectl, labctl

pytestmark = [pytest.mark.testbed, pytest.mark.e2e]

OUT = runs.OUT / "public-endpoints"
SOURCE_KEYS = (
    "kube_apt_repo",
    "kube_apt_key",
    "docker_source",
    "docker_apt_repo",
    "docker_apt_key",
    "cri_dockerd_url",
    "cri_dockerd_sha256",
    "kube_image_repository",
    "weave_image_repo",
    "image_archives",
    "labs",
)
FIGURES: dict = {"steps": {}}


def record(step: str, **figures) -> None:
    FIGURES["steps"][step] = figures
    (OUT / "figures.json").write_text(json.dumps(FIGURES, indent=2) + "\n")


@pytest.fixture(scope="module")
def public(testbed, offline_dir, tmp_path_factory):
    """Bare hosts that resolve the public names to the stand-ins and trust their CA, the
    stand-ins serving, and the topology without source keys."""
    missing = standins.missing(offline_dir)
    if missing:
        pytest.skip(missing)
    if bed.VIRTUALBOX:
        pytest.skip("needs the course shape: the shipped topology's addresses")
    OUT.mkdir(parents=True, exist_ok=True)
    testbed.renew_roots()
    raw = yaml.safe_load(testbed.config.read_text())
    raw.pop("docker_source")  # `labctl machines --offline` picks Debian's docker.io
    # The shipped file spells some defaults out (weave_image_repo, labs): no other value.
    changed = {k: raw[k] for k in SOURCE_KEYS if k in raw and raw[k] != DEFAULTS[k]}
    assert not changed, changed
    config = testbed.state / "public-lab.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    t0 = time.monotonic()
    s = standins.StandIns(offline_dir, tmp_path_factory.mktemp("standins"), bed.cluster().bridge)
    made = round(time.monotonic() - t0, 1)
    testbed.e2e_config = config
    testbed.standins = s
    try:
        s.start()
        pushed = s.push_images()
        for h in testbed.hosts:
            rc, out, err = testbed.ssh(h, s.install_script())
            assert rc == 0, f"{h}: {out}{err}"
        FIGURES["stand-ins"] = {
            "made (s)": made,
            "image push (s)": pushed,
            "images": sorted(s.pushed),
            "topology": {k: v for k, v in raw.items() if not k.startswith("ssh_")},
        }
        yield testbed
    finally:
        for h in testbed.hosts:
            testbed.ssh(h, s.uninstall_script())
        s.stop()


def doctor(public) -> dict[tuple[str, str], dict]:
    r = labctl(public, "doctor", "--format", "json")
    assert "Traceback" not in r.stdout + r.stderr
    return {(c["id"], c["host"]): c for c in json.loads(r.stdout)["checks"]}


def unreachable(evidence: str) -> list[str]:
    """The URLs of "cannot reach: 000 URL: why; 404 URL: why" (doctor's sources evidence)."""
    return re.findall(r"\b(?:000|404) (https?://\S+?)(?::\s|$)", evidence)


def probes(public) -> dict[str, list[str]]:
    """The topology's probe URLs as a Debian 12 amd64 host reads them, by the stand-in that
    answers for their host name."""
    urls = load(public.e2e_config).source_probes()
    out: dict[str, list[str]] = {s.key: [] for s in standins.ALL}
    for url in urls:
        url = url.replace("{distro}", "debian").replace("{codename}", standins.CODENAME)
        url = url.replace("{arch}", "amd64")
        name = url.split("/")[2]
        out[next(s.key for s in standins.ALL if name in s.names)].append(url)
    return out


def test_sources_pass_against_the_stand_ins(public):
    results = doctor(public)
    rows = {h: results[("sources", h)] for h in public.hosts}
    (OUT / "doctor-sources.json").write_text(json.dumps(rows, indent=2) + "\n")
    bad = {h: r["evidence"] for h, r in rows.items() if r["status"] != "pass"}
    record("doctor sources", result="pass" if not bad else "FAIL", hosts=sorted(rows))
    assert not bad, bad
    assert sum(len(v) for v in probes(public).values()) == 7, probes(public)


@pytest.mark.parametrize("key", [s.key for s in standins.ALL])
def test_a_stopped_stand_in_fails_sources_naming_its_urls_only(public, key):
    want = probes(public)[key]
    public.standins.stop(key)
    try:
        results = doctor(public)
    finally:
        public.standins.restart(key)
    lines = {}
    for h in public.hosts:
        row = results[("sources", h)]
        assert row["status"] == "fail", row
        assert unreachable(row["evidence"]) == want, row["evidence"]
        lines[h] = row["evidence"]
    FIGURES.setdefault("stopped", {})[key] = lines["master"]
    record(f"doctor sources, {key} stopped", result="fail, naming only its URLs", urls=want)


def pulled(public) -> dict[str, dict[str, int]]:
    """Bytes each bed host took from each stand-in so far."""
    names = {ip: name for name, ip in public.ips.items()}
    return {names[c]: v for c, v in public.standins.bytes_by_client().items() if c in names}


def repo_digests(public, host: str) -> dict[str, str]:
    """Repository → digest of the images a host pulled (a loaded archive has no digest)."""
    fmt = "{{.Repository}} {{.Digest}}"
    _, out, _ = public.ssh(host, f"docker images --digests --format '{fmt}'")
    return dict(line.split() for line in out.splitlines() if "sha256:" in line)


def test_deploy_from_bare_hosts_with_the_default_sources(public):
    r = runs.deploy(public, runs.e2e_env(public), OUT, "deploy-1")
    got = pulled(public)
    record(
        "deploy from bare hosts",
        result="pass" if r["exit_code"] == 0 else "FAIL",
        seconds=r["seconds"],
        phases=r["phases"],
        bytes_from_stand_ins=got,
    )
    assert r["exit_code"] == 0, r["output"][-3000:] + runs.diagnosis(public, OUT, "deploy-1")
    nodes = kubectl(public, "get nodes -o wide --no-headers")
    (OUT / "nodes.txt").write_text(nodes)
    assert {line.split()[0]: line.split()[1] for line in nodes.splitlines()} == {
        h: "Ready" for h in public.hosts
    }, nodes
    for h in public.hosts:
        _, lists, _ = public.ssh(h, "cat /etc/apt/sources.list.d/kubernetes.list "
                                 "/etc/apt/sources.list.d/docker.list")  # fmt: skip
        assert "https://pkgs.k8s.io/core:/stable:/v1.36/deb/ /" in lists, lists
        assert "https://download.docker.com/linux/debian bookworm stable" in lists, lists
        _, pkgs, _ = public.ssh(h, "dpkg-query -W -f='${Package} ${Version}\\n' docker-ce kubeadm")
        assert "docker-ce 5:20.10.24~k8slab.repack" in pkgs and "kubeadm 1.36" in pkgs, pkgs
        assert "0.4.3" in public.ssh(h, "/usr/local/bin/cri-dockerd --version 2>&1")[1]
        # Pulled, not loaded: an image from a registry keeps the digest it came with.
        digests = repo_digests(public, h)
        (OUT / f"pulled-by-deploy.{h}.txt").write_text("\n".join(sorted(digests)) + "\n")
        want = {"registry.k8s.io/kube-proxy", "registry.k8s.io/pause", "rajchaudhuri/weave-kube"}
        assert want <= set(digests), (h, digests)
        # Every stand-in served this host (the Docker Hub one: Weave).
        assert set(got[h]) == {s.key for s in standins.ALL} and all(got[h].values()), got[h]
    _, images, _ = public.ssh("master", "docker images --format '{{.Repository}}:{{.Tag}}'")
    assert "registry.k8s.io/kube-apiserver:v1.36.2" in images.split(), images


def test_second_run_changes_nothing(public):
    r = runs.deploy(public, runs.e2e_env(public), OUT, "deploy-2")
    record("re-run", result="pass" if not r["changes"] else "FAIL", seconds=r["seconds"])
    assert r["exit_code"] == 0, r["output"][-6000:]
    assert not r["changes"], r["output"][-6000:]


def test_labctl_apply_pulls_the_lab_images(public):
    before = pulled(public)
    r = labctl(public, "apply", "ch09")
    (OUT / "apply.log").write_text(r.stdout + r.stderr)
    nodeport = labctl(public, "apply", "ch09", "--only", "nodeport")
    (OUT / "apply-nodeport.log").write_text(nodeport.stdout + nodeport.stderr)
    after = pulled(public)
    hub = {h: after[h].get(standins.HUB.key, 0) - before[h].get(standins.HUB.key, 0) for h in after}
    record(
        "labctl apply ch09",
        result="pass" if r.returncode == nodeport.returncode == 0 else "FAIL",
        seconds=r.seconds,
        nodeport_seconds=nodeport.seconds,
        bytes_from_docker_hub=hub,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    assert nodeport.returncode == 0, nodeport.stdout + nodeport.stderr
    workers = {h: repo_digests(public, h) for h in ("slave1", "slave2")}
    (OUT / "lab-digests.json").write_text(json.dumps(workers, indent=2) + "\n")
    # busybox (the base `labctl apply` builds on) on every worker, nginx and httpd where
    # their pods run.
    assert all("busybox" in d and hub[h] > 0 for h, d in workers.items()), (workers, hub)
    assert {"nginx", "httpd"} <= set(workers["slave1"]) | set(workers["slave2"]), workers


def test_labctl_verify_passes(public):
    r = labctl(public, "verify", "--record", str(OUT / "verify-bundle"), "--format", "json")
    (OUT / "verify.json").write_text(r.stdout)
    report = json.loads(r.stdout)
    failed = [f"{c['id']}@{c['host']}: {c['evidence']}" for c in report["checks"]]
    failed = [f for f, c in zip(failed, report["checks"], strict=True) if c["status"] != "pass"]
    record(
        "labctl verify",
        result="pass" if r.returncode == 0 and not failed else "FAIL",
        seconds=r.seconds,
        totals=report["totals"],
    )
    FIGURES["bytes from stand-ins, total"] = pulled(public)
    (OUT / "figures.json").write_text(json.dumps(FIGURES, indent=2) + "\n")
    assert r.returncode == 0 and not failed, "\n".join(failed) + r.stderr
