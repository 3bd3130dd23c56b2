"""Lab data: loading, topology overrides, and the rendered manifests against the strict
Kubernetes schemas of every supported minor, with the course's names, labels and ports."""

from __future__ import annotations

import subprocess
import sys

import kubernetes_validate
import pytest
from conftest import COURSE_TOPOLOGY, course_topology

from k8slab import topology
from k8slab.labs import LabError, lab_ids, load_lab, render_manifests


def course(**overrides):
    raw = {**course_topology(), **overrides}
    return topology.parse(raw, COURSE_TOPOLOGY)


def objects(topo=None, only=()):
    topo = topo or course()
    lab = load_lab("ch09", topo)
    return {(m.kind, m.name): m.obj for m in render_manifests(lab, topo, lab.select_steps(only))}


def test_ch09_is_listed():
    assert "ch09" in lab_ids()


def test_reading_a_lab_imports_no_ssh():
    """k8slab.labs reads labs; applying them over SSH is k8slab.apply's."""
    code = (
        "import sys, k8slab.labs; "
        "print(sorted(m for m in ('k8slab.ssh', 'k8slab.apply', 'paramiko') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("minor", topology.SUPPORTED_KUBE_MINORS)
def test_every_manifest_validates_strictly(minor):
    topo = course(kube_version=minor)
    lab = load_lab("ch09", topo)
    manifests = render_manifests(lab, topo)
    assert len(manifests) == 7  # the optional nodeport Service included
    for m in manifests:
        kubernetes_validate.validate(m.obj, f"{minor}.0", strict=True)


def test_a_schema_violation_would_be_caught():
    """The strict schemas reject what a typo would produce, so the test above can fail."""
    pod = objects()[("Pod", "volume-hostpath")]
    pod["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, "1.35.0", strict=True)


def test_course_names_labels_and_ports():
    o = objects()
    assert o[("Namespace", "gurumee")]["metadata"]["name"] == "gurumee"

    dep = o[("Deployment", "simple-app-dep")]
    assert dep["metadata"]["namespace"] == "gurumee"
    assert dep["metadata"]["labels"] == {"app": "simple-app"}
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["selector"]["matchLabels"] == {"app": "simple-app"}
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["ports"] == [{"containerPort": 8080}]
    assert c["imagePullPolicy"] == "IfNotPresent"

    svc = o[("Service", "simple-app-svc")]
    assert svc["metadata"]["namespace"] == "gurumee"
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"port": 8080, "targetPort": 8080}]
    assert svc["spec"]["selector"] == {"app": "simple-app"}

    nginx = o[("Pod", "nginx")]
    assert nginx["metadata"]["namespace"] == "default"
    assert nginx["spec"]["containers"][0]["image"] == "nginx"

    ed = o[("Pod", "volume-empty-dir")]
    gen, web = ed["spec"]["containers"]
    assert (gen["name"], web["name"]) == ("html-generator", "web-server")
    assert gen["volumeMounts"] == [{"mountPath": "/var/htdocs/", "name": "html"}]
    assert web["image"] == "httpd"
    assert web["volumeMounts"] == [
        {"mountPath": "/usr/local/apache2/htdocs", "name": "html", "readOnly": True}
    ]
    assert web["ports"] == [{"containerPort": 80}]
    assert ed["spec"]["volumes"] == [{"name": "html", "emptyDir": {}}]

    hp = o[("Pod", "volume-hostpath")]
    (web,) = hp["spec"]["containers"]
    assert web["volumeMounts"][0] == {
        "mountPath": "/usr/local/apache2/htdocs",
        "name": "html",
        "readOnly": True,
    }
    assert web["ports"] == [{"containerPort": 80}]
    assert hp["spec"]["volumes"] == [
        {"name": "html", "hostPath": {"path": "/var/htdocs", "type": "Directory"}}
    ]


def test_built_images_are_never_pulled():
    for obj in objects().values():
        spec = obj.get("spec", {})
        pod = spec.get("template", {}).get("spec", spec)
        for c in pod.get("containers", []):
            assert c["imagePullPolicy"] == "IfNotPresent", c["name"]


def test_topology_overrides_values_and_upstream_images():
    topo = course(
        labs={
            "ch09": {
                "namespace": "lab9",
                "replicas": 2,
                "hostpath": "/srv/htdocs",
                "images": {"count": {"tag": "gurumee92/count", "build": False}},
            }
        }
    )
    o = objects(topo)
    assert o[("Deployment", "simple-app-dep")]["metadata"]["namespace"] == "lab9"
    assert o[("Deployment", "simple-app-dep")]["spec"]["replicas"] == 2
    assert ("Namespace", "lab9") in o
    hp = o[("Pod", "volume-hostpath")]["spec"]["volumes"][0]
    assert hp["hostPath"]["path"] == "/srv/htdocs"
    gen = o[("Pod", "volume-empty-dir")]["spec"]["containers"][0]
    assert gen["image"] == "gurumee92/count"
    lab = load_lab("ch09", topo)
    assert [i.name for i in lab.images.values() if i.build] == ["simple_app"]
    checks = {c.id: c for c in lab.checks}
    assert "-n lab9" in checks["dns.simple-app"].run["deploy"].cmd
    assert checks["storage.hostpath-file"].run["file"].cmd == "cat /srv/htdocs/index.html"


@pytest.mark.parametrize(
    "labs, message",
    [
        (
            {"ch09": {"namespaces": "x"}},
            "labs.ch09.namespaces: unknown key (did you mean 'namespace'?)",
        ),
        ({"ch09": {"images": {"count": {"tga": "x"}}}}, "labs.ch09.images.count.tga: unknown key"),
        ({"ch09": {"images": "busybox"}}, "labs.ch09.images: expected a mapping"),
    ],
)
def test_bad_overrides_are_one_line_errors(labs, message):
    topo = course(labs=labs)
    with pytest.raises(LabError) as e:
        load_lab("ch09", topo)
    assert str(e.value).startswith(f"{topo.path}: {message}")


def test_steps_select_their_objects():
    assert set(objects(only=("hostpath",))) == {("Pod", "volume-hostpath")}
    assert set(objects(only=("emptydir",))) == {("Pod", "nginx"), ("Pod", "volume-empty-dir")}
    with pytest.raises(LabError, match="no step 'nfs' .steps: coredns, emptydir, hostpath."):
        objects(only=("nfs",))


def test_pod_checks_run_inside_the_pod_from_master():
    lab = load_lab("ch09", course())
    curl = next(c for c in lab.checks if c.id == "dns.curl").run["curl"]
    assert curl.on_master
    assert curl.cmd == "kubectl exec nginx -- sh -c 'curl -sS -m 5 simple-app-svc.gurumee:8080'"


def test_a_lab_with_an_unknown_kind_is_rejected(tmp_path):
    src = (topology.DATA_ROOT / "labs" / "ch09" / "lab.yaml").read_text()
    (tmp_path / "ch99" / "manifests").mkdir(parents=True)
    for m in (topology.DATA_ROOT / "labs" / "ch09" / "manifests").iterdir():
        (tmp_path / "ch99" / "manifests" / m.name).write_text(m.read_text())
    (tmp_path / "ch99" / "lab.yaml").write_text(
        src.replace("kind: same-text", "kind: same-txt").replace("id: ch09", "id: ch99")
    )
    with pytest.raises(LabError, match="check storage.hostpath-file: unknown kind 'same-txt'"):
        load_lab("ch99", course(), root=tmp_path)


def test_every_rendered_command_is_valid_shell():
    """Quoting mistakes in lab.yaml (jsonpath braces, $(...), pod exec wrapping) show here;
    whether the commands work is proven only on a cluster or through recorded outputs."""
    import subprocess

    lab = load_lab("ch09", course())
    commands = [cmd.cmd for c in lab.checks for cmd in c.run.values()]
    commands += [p.run for p in lab.prepare.values()] + [p.undo for p in lab.prepare.values()]
    for cmd in commands:
        for shell in ("sh", "bash"):
            r = subprocess.run([shell, "-n", "-c", cmd], capture_output=True, text=True)
            assert r.returncode == 0, f"{shell}: {cmd}: {r.stderr}"
