"""labctl's surface: every command has help with an example, output formats, and errors that
are one line with the right exit code."""

from __future__ import annotations

import click
import pytest
import yaml
from click.testing import CliRunner
from conftest import COURSE_TOPOLOGY, course_topology

from k8slab.cli import main


def run(*args, input=None):
    result = CliRunner().invoke(main, ["--config", str(COURSE_TOPOLOGY), *args], input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def commands(group: click.Group, prefix=()):
    yield prefix, group
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


@pytest.mark.parametrize("path", [p for p, _ in commands(main)], ids=" ".join)
def test_every_command_has_help_with_an_example_in_80_columns(path):
    result = CliRunner().invoke(main, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert "Example:" in result.output
    example = result.output.split("Example:", 1)[1]
    assert "labctl " + (" ".join(path) if path else "") in example
    # click wraps the prose, not the \b example blocks: those must be written to fit
    assert [line for line in result.output.splitlines() if len(line) > 80] == []


def test_the_walk_found_every_command():
    assert {p for p, _ in commands(main)} >= {
        (),
        ("labs",),
        ("render",),
        ("apply",),
        ("delete",),
        ("verify",),
    }


def test_labs_lists_steps_and_checks():
    result = run("labs")
    assert result.exit_code == 0
    assert "ch09: Kubernetes core concepts (4)" in result.output
    for word in ("coredns", "emptydir", "hostpath", "net.weave-peers", "storage.hostpath-forward"):
        assert word in result.output
    kinds = run("labs", "--kinds")
    assert "pause-sandboxes" in kinds.output and "service-rules" in kinds.output


def test_render_prints_one_multi_document_yaml():
    result = run("render", "ch09")
    assert result.exit_code == 0
    docs = list(yaml.safe_load_all(result.output))
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("Namespace", "gurumee"),
        ("Deployment", "simple-app-dep"),
        ("Service", "simple-app-svc"),
        ("Pod", "nginx"),
        ("Pod", "volume-empty-dir"),
        ("Pod", "volume-hostpath"),
    ]


def test_render_out_writes_one_file_per_object(tmp_path):
    result = run("render", "ch09", "--out", str(tmp_path / "m"))
    assert result.exit_code == 0
    files = sorted(p.name for p in (tmp_path / "m").glob("*.yaml"))
    assert files == [
        "01-namespace-gurumee.yaml",
        "02-deployment-simple-app-dep.yaml",
        "03-service-simple-app-svc.yaml",
        "04-pod-nginx.yaml",
        "05-pod-volume-empty-dir.yaml",
        "06-pod-volume-hostpath.yaml",
    ]
    assert yaml.safe_load((tmp_path / "m" / files[3]).read_text())["kind"] == "Pod"


def test_render_out_again_leaves_no_stale_file_and_spares_other_folders(tmp_path):
    run("render", "ch09", "--out", str(tmp_path / "m"))
    again = run("render", "ch09", "--only", "hostpath", "--out", str(tmp_path / "m"))
    assert again.exit_code == 0, again.output
    left = sorted(p.name for p in (tmp_path / "m").glob("*.yaml"))
    assert left == ["01-pod-volume-hostpath.yaml"]

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    refused = run("render", "ch09", "--out", str(tmp_path / "mine"))
    assert refused.exit_code == 2
    assert "holds files labctl render did not write (notes.txt)" in refused.output
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("--config", "/nonexistent.yaml", "labs"), "topology file /nonexistent.yaml not found"),
        (("render", "ch10"), "no lab 'ch10' (did you mean 'ch09'?) (labs: ch09)"),
        (("render", "ch09", "--only", "nfs"), "ch09: no step 'nfs'"),
        (("verify", "--only", "net.nope"), "ch09: no check 'net.nope'"),
        (("verify", "--record", "a", "--replay", "."), "--record and --replay cannot be combined"),
        (("apply", "ch09", "--only", "nfs"), "ch09: no step 'nfs'"),
        (("verify", "--format", "xml"), "Invalid value for '--format'"),
    ],
)
def test_errors_are_one_line_with_exit_2(args, message):
    if args[0] == "--config":
        result = CliRunner().invoke(main, list(args))
    else:
        result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    if not message.startswith("Invalid value"):
        assert len(result.output.strip().splitlines()) == 1


def test_a_bad_topology_override_is_a_config_error(tmp_path):
    raw = course_topology()
    raw["labs"] = {"ch09": {"replica": 2}}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "t.yaml"), "render"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"Error: {tmp_path / 't.yaml'}: labs.ch09.replica: unknown key (did you mean 'replicas'?)"
    )


def test_delete_without_a_terminal_needs_yes(tmp_path):
    result = run("delete", "ch09", input="y\n")
    assert result.exit_code == 2
    assert result.output.strip() == (
        "Error: delete changes the cluster and slave1, slave2: pass --yes (no terminal to ask on)"
    )
