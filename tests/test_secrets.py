"""The join token never shows: pyinfra logs it masked, no check reads it, and no output or
bundle of labctl carries anything shaped like one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_bundle

from k8slab.cli import main
from k8slab.deploy.join import join_command, parse_join_command
from k8slab.doctor import load as load_preflight
from k8slab.labs import lab_ids, load_lab
from k8slab.topology import REPO_ROOT, load

# kubeadm's bootstrap token format: [a-z0-9]{6}.[a-z0-9]{16}
TOKEN = re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b")
CA_HASH = "sha256:" + "0123456789abcdef" * 4
# What `kubeadm token create --print-join-command` prints (the kubeadm-join reference).
PRINTED = (
    "kubeadm join 10.0.2.15:6443 --token 9a08jv.c0izixklcxtmnze7 "
    f"--discovery-token-ca-cert-hash {CA_HASH} \n"
)
TOPO = load(REPO_ROOT / "inventory" / "lab.yaml")


def assert_no_token(text: str, where: str) -> None:
    found = TOKEN.search(text)
    assert not found, f"{where} carries a token-shaped string: {found.group(0)}"


def test_the_token_check_itself_can_fail():
    with pytest.raises(AssertionError, match="token-shaped"):
        assert_no_token(PRINTED, "print-join-command")


def test_join_command_masks_the_token_in_what_pyinfra_logs():
    token, ca_hash = parse_join_command(PRINTED)
    assert (token, ca_hash) == ("9a08jv.c0izixklcxtmnze7", CA_HASH)
    cmd = join_command(TOPO.host_vars(TOPO.host("slave1")), token, ca_hash)
    shown = str(cmd)
    assert_no_token(shown, "the logged join command")
    assert "*MASKED*" in shown
    assert shown.startswith("kubeadm join 10.0.2.15:6443 --token ")
    assert "--cri-socket unix:///var/run/cri-dockerd.sock --node-name slave1" in shown
    # What runs on the worker has the real token.
    assert f"--token {token} " in cmd.get_raw_value()


def test_no_join_command_in_other_output():
    assert parse_join_command("error: timed out waiting for the condition") is None


def test_no_check_reads_where_tokens_live():
    # Bootstrap tokens live in kube-system Secrets and `kubeadm token list`.
    labs = [load_lab(lab_id, TOPO) for lab_id in lab_ids()] + [load_preflight(TOPO)]
    commands = [run.cmd for lab in labs for check in lab.checks for run in check.run.values()]
    assert commands
    for cmd in commands:
        assert not re.search(r"kubeadm token|bootstrap-token|get secrets?\b|certificate-key", cmd)


def test_verify_outputs_and_bundles_carry_no_token(tmp_path):
    course = write_bundle(tmp_path / "course")
    runner = CliRunner()
    for fmt in ("table", "json", "junit"):
        result = runner.invoke(main, ["verify", "--replay", str(course), "--format", fmt])
        assert result.exit_code == 0, result.output
        assert_no_token(result.output, f"verify --format {fmt}")
    for path in Path(course).rglob("*"):
        if path.is_file():
            assert_no_token(path.read_text(), str(path))
