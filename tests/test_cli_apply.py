"""`labctl apply` / `labctl delete` end to end over a real sshd, with a stand-in `kubectl`
(a shell script that answers like kubectl and logs its arguments), since no cluster runs here.
Proves the order (prepare, upload, apply, wait), the progress lines and the timeout message;
not how a real API server answers."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from k8slab.cli import main

FAKE_KUBECTL = r"""#!/bin/sh
# Stand-in kubectl: `wait` succeeds once READY_AFTER calls have been made.
echo "$*" >> "$LOG"
case "$1" in
  apply) for f in "$@"; do case "$f" in *.yaml) echo "applied $(basename "$f")";; esac; done ;;
  delete) echo "deleted $#" ;;
  wait) n=$(( $(cat "$COUNT" 2>/dev/null || echo 0) + 1 )); echo $n > "$COUNT"
        [ "$n" -ge "$READY_AFTER" ] && echo "condition met" && exit 0
        echo "timed out waiting for the condition" >&2; exit 1 ;;
  get) case "$2" in
         events) echo "LAST SEEN TYPE REASON OBJECT MESSAGE"
                 echo "5s Warning FailedMount pod/volume-hostpath hostPath type check failed" ;;
         *) n=$(cat "$COUNT" 2>/dev/null || echo 0)   # AGE grows every poll; the state
            [ "$n" -lt 3 ] && phase=ContainerCreating || phase=Running  # changes once
            echo "volume-hostpath 0/1 $phase 0 $(( n * 2 ))s" ;;
       esac ;;
esac
"""


@pytest.fixture
def lab_env(sshd, tmp_path):
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(FAKE_KUBECTL)
    kubectl.chmod(0o755)
    log, count = tmp_path / "kubectl.log", tmp_path / "count"
    htdocs = tmp_path / "htdocs"

    def labctl(*args, ready_after=2, input=None):
        command = f"LOG={log} COUNT={count} READY_AFTER={ready_after} {kubectl}"
        config = sshd.topology(
            tmp_path / "lab.yaml",
            labs={"ch09": {"hostpath": str(htdocs), "kubectl": command}},
        )
        result = CliRunner().invoke(
            main,
            ["--config", str(config), "--known-hosts", str(tmp_path / "kh"), *args],
            input=input,
        )
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        return result

    return labctl, log, htdocs


def test_apply_prepares_uploads_applies_and_waits(lab_env):
    labctl, log, htdocs = lab_env
    result = labctl("apply", "ch09", "--only", "hostpath")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].endswith(
        "index.html holds the node's hostname (the course's hostPath step): changed"
    )
    assert "master: applied 01-pod-volume-hostpath.yaml" in lines
    assert (
        "waiting: pod/volume-hostpath -n default: volume-hostpath 0/1 ContainerCreating 0 2s"
        in lines
    )
    assert "ready: pod/volume-hostpath -n default" in lines
    assert lines[-1] == "ch09: applied; grade it with: labctl verify ch09"
    calls = log.read_text().splitlines()
    assert calls.pop(0) == "get nodes -o name"  # is there a cluster? (k8slab.cluster)
    assert calls[0] == "apply -f .k8s-lab/ch09/manifests/01-pod-volume-hostpath.yaml"
    assert calls[1].startswith("wait --for=condition=Ready pod/volume-hostpath -n default")
    assert (htdocs / "index.html").exists()


def test_apply_says_waiting_only_when_the_state_changes(lab_env):
    # Six polls; the AGE column changes on each, the phase once: two waiting lines, not six.
    labctl, _, _ = lab_env
    result = labctl("apply", "ch09", "--only", "hostpath", ready_after=7)
    assert result.exit_code == 0, result.output
    waiting = [line for line in result.output.splitlines() if line.startswith("waiting:")]
    assert waiting == [
        "waiting: pod/volume-hostpath -n default: volume-hostpath 0/1 ContainerCreating 0 2s",
        "waiting: pod/volume-hostpath -n default: volume-hostpath 0/1 Running 0 6s",
    ]


def test_apply_timeout_names_the_object_and_its_events(lab_env):
    labctl, _, _ = lab_env
    result = labctl("apply", "ch09", "--only", "hostpath", "--timeout", "1", ready_after=99)
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: timed out after 1s: pod/volume-hostpath -n default not ready")
    assert "(volume-hostpath 0/1 ContainerCreating 0 2s)" in last
    assert "hostPath type check failed" in last


def test_delete_removes_objects_in_reverse_and_undoes_the_node_file(lab_env):
    labctl, log, htdocs = lab_env
    assert labctl("apply", "ch09", "--nodes-only", "--only", "hostpath").exit_code == 0
    assert (htdocs / "index.html").exists()
    result = labctl("delete", "ch09", "--yes")
    assert "master: deleted" in result.output
    (call,) = [c for c in log.read_text().splitlines() if c.startswith("delete")]
    files = [w for w in call.split() if w.endswith(".yaml")]
    assert files[0].endswith("07-service-simple-app-nodeport.yaml")
    assert files[1].endswith("06-pod-volume-hostpath.yaml")
    assert files[-1].endswith("01-namespace-gurumee.yaml")
    assert not (htdocs / "index.html").exists()
