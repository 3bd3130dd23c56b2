"""Labs are data: ``labs/<id>/lab.yaml`` plus its manifest templates and image contexts.

This module reads a lab and connects nowhere: it loads one (its values overridden by the
topology's ``labs: {<id>: ...}``), validates it, selects its steps and checks, and renders
its manifests. k8slab.apply applies and deletes a lab over SSH; checks live in
k8slab.checks::

    >>> lab = load_lab("ch09", topology.load())
    >>> [s.id for s in lab.steps]
    ['coredns', 'emptydir', 'hostpath', 'nodeport']
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from k8slab.errors import LabctlError
from k8slab.topology import DATA_ROOT, Host, Topology

LABS_DIR = DATA_ROOT / "labs"
# More lab folders (each holding <id>/lab.yaml), searched before the package's own, so a
# learner's copy of a lab can stand in for it: --labs-dir or $LAB_LABS_DIR (':'-separated).
LABS_ENV = "LAB_LABS_DIR"
# labctl doctor's checks are a lab too (k8slab/preflight), not listed with the course's.
PREFLIGHT = "preflight"
WHERES = ("master", "every-node", "every-worker")


class LabError(LabctlError, ValueError):
    """A lab that cannot be loaded or used as asked; the message is one line."""


@dataclass(frozen=True)
class Command:
    cmd: str
    on_master: bool  # else on the check's own host


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    where: str  # master | every-node | every-worker | pod/<name>
    run: dict[str, Command]
    expect: tuple[dict[str, Any], ...]
    hint: str
    after: tuple[str, ...]

    def hosts(self, topo: Topology) -> tuple[Host, ...]:
        if self.where == "every-node":
            return topo.hosts
        if self.where == "every-worker":
            return topo.workers
        return (topo.control_plane,)


@dataclass(frozen=True)
class Prepare:
    id: str
    title: str
    where: str
    run: str
    undo: str


@dataclass(frozen=True)
class Image:
    name: str
    tag: str
    build: bool
    context: Path | None


@dataclass(frozen=True)
class WaitFor:
    kind: str
    name: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name} -n {self.namespace}"


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    manifests: tuple[str, ...]
    images: tuple[str, ...]
    prepare: tuple[str, ...]
    wait: tuple[WaitFor, ...]
    optional: bool  # beyond the course: applied only when named with --only


@dataclass(frozen=True)
class Lab:
    id: str
    title: str
    root: Path
    values: dict[str, Any]
    steps: tuple[Step, ...]
    prepare: dict[str, Prepare]
    images: dict[str, Image]
    checks: tuple[Check, ...]

    def select_steps(self, only: tuple[str, ...] = ()) -> tuple[Step, ...]:
        known = [s.id for s in self.steps]
        for name in only:
            if name not in known:
                raise LabError(
                    f"{self.id}: no step {name!r}{did_you_mean(name, known)} "
                    f"(steps: {', '.join(known)})"
                )
        if not only:
            return tuple(s for s in self.steps if not s.optional)
        return tuple(s for s in self.steps if s.id in only)

    def select_checks(self, only: tuple[str, ...] = ()) -> tuple[Check, ...]:
        """`only` holds check ids or their group prefix (`net` selects every net.* check)."""

        def picked(check: Check, name: str) -> bool:
            return check.id == name or check.id.startswith(name + ".")

        ids = [c.id for c in self.checks]
        groups = list(dict.fromkeys(i.split(".")[0] for i in ids if "." in i))
        for name in only:
            if not any(picked(c, name) for c in self.checks):
                raise LabError(
                    f"{self.id}: no check {name!r}{did_you_mean(name, groups + ids)} "
                    f"(groups: {', '.join(groups) or 'none'}; checks: {', '.join(ids)})"
                )
        return tuple(c for c in self.checks if not only or any(picked(c, n) for n in only))


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """The closest of `known`, ignoring case (`coreDNS`: 'coredns') and matching the name
    part of a `group.name` id too (`coredns`: 'dns.coredns')."""
    by_lower: dict[str, str] = {}
    for k in known:
        by_lower.setdefault(k.lower(), k)
    for k in known:
        by_lower.setdefault(k.rsplit(".", 1)[-1].lower(), k)
    wanted = str(name).lower()
    if wanted in by_lower and by_lower[wanted] != name:
        return f" (did you mean {by_lower[wanted]!r}?)"
    close = difflib.get_close_matches(wanted, list(by_lower), n=1)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""


Roots = Path | Sequence[Path] | None


def lab_dirs(root: Roots = None) -> list[Path]:
    """Where labs are looked for, first match wins: `root` if given, else $LAB_LABS_DIR's
    folders, then the package's own labs."""
    if isinstance(root, Path):
        return [root]
    extra = [Path(p).expanduser() for p in os.environ.get(LABS_ENV, "").split(os.pathsep) if p]
    return [*(root or ()), *extra, LABS_DIR]


def _lab_files(root: Roots = None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in lab_dirs(root):
        for path in sorted(d.glob("*/lab.yaml")):
            found.setdefault(path.parent.name, path)
    return found


def lab_ids(root: Roots = None) -> list[str]:
    return sorted(_lab_files(root))


def load_lab(lab_id: str, topo: Topology, root: Roots = None) -> Lab:
    files = _lab_files(root)
    path = files.get(lab_id)
    if path is None:
        raise LabError(
            f"no lab {lab_id!r}{did_you_mean(lab_id, list(files))} "
            f"(labs: {', '.join(sorted(files)) or 'none'})"
        )
    known = {*_lab_files(), *files, PREFLIGHT}
    for other in topo.labs:
        if other not in known:
            raise LabError(
                f"{topo.path}: labs.{other}: no such lab{did_you_mean(other, sorted(known))}"
            )
    try:
        # libyaml when present: the pure-Python loader is most of `labctl labs`' time
        raw = yaml.load(
            path.read_text(encoding="utf-8"), getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader
        )
    except yaml.YAMLError as e:
        raise LabError(f"{path}: malformed YAML: {str(e).splitlines()[0]}") from None
    values = _merge(raw["values"], topo.labs.get(lab_id, {}), f"{topo.path}: labs.{lab_id}")
    context = {
        **topo.cluster_vars(),
        **values,
        "master": topo.control_plane.name,
        "node_ips": [h.node_ip for h in topo.hosts],
    }
    try:
        rendered = _render_strings(raw, context)
    except LabError as e:
        raise LabError(f"{path}: {e}") from None
    try:
        return _build(lab_id, path, values, rendered)
    except (KeyError, TypeError) as e:
        raise LabError(f"{path}: malformed lab: {e}") from None


def _merge(defaults: dict, overrides: dict, where: str) -> dict:
    """Topology overrides replace defaults key by key; an unknown key is a typo, not data."""
    merged = dict(defaults)
    for key, value in overrides.items():
        if key not in defaults:
            raise LabError(f"{where}.{key}: unknown key{did_you_mean(key, list(defaults))}")
        if isinstance(defaults[key], dict):
            if not isinstance(value, dict):
                raise LabError(f"{where}.{key}: expected a mapping")
            merged[key] = _merge(defaults[key], value, f"{where}.{key}")
        else:
            merged[key] = value
    return merged


_SPLIT = "\x00k8s-lab-split\x00"
_PLAIN = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")


def _templated(n: Any) -> bool:
    return isinstance(n, str) and ("{{" in n or "{%" in n)


def _render_strings(node: Any, context: dict) -> Any:
    """Every string of a lab (keys too) rendered as a Jinja template (StrictUndefined; one trailing
    newline dropped, as Jinja does). When every template is a plain `{{ name }}`, no Jinja
    is needed at all: importing and compiling it was most of `labctl labs`' time."""
    found: list[str] = []

    def collect(n: Any) -> None:
        if _templated(n):
            found.append(n[:-1] if n.endswith("\n") else n)
        elif isinstance(n, list):
            for x in n:
                collect(x)
        elif isinstance(n, dict):
            # keys too: service-rules' owners are keyed "{{ namespace }}/simple-app-svc"
            for k, x in n.items():
                collect(k)
                collect(x)

    collect(node)
    text = _SPLIT.join(found)
    if "{%" in text or "{{" in _PLAIN.sub("", text):
        import jinja2

        env = jinja2.Environment(undefined=jinja2.StrictUndefined)
        try:
            rendered = iter(env.from_string(text).render(context).split(_SPLIT))
        except jinja2.TemplateError as e:
            raise LabError(e.message or str(e)) from None
    else:
        for name in _PLAIN.findall(text):
            if name not in context:
                raise LabError(f"'{name}' is undefined")
        rendered = iter(_PLAIN.sub(lambda m: str(context[m.group(1)]), text).split(_SPLIT))

    def put(n: Any) -> Any:
        if _templated(n):
            return next(rendered)
        if isinstance(n, list):
            return [put(x) for x in n]
        if isinstance(n, dict):
            return {put(k): put(v) for k, v in n.items()}  # key first, as collected
        return n

    return put(node)


def _build(lab_id: str, path: Path, values: dict, r: dict) -> Lab:
    lab_dir = path.parent
    images = {}
    for name, spec in values["images"].items():
        ctx = r["images"].get(name, {}).get("context")
        if spec["build"] and not ctx:
            raise LabError(f"{path}: images.{name}: build is true but the lab has no context")
        images[name] = Image(
            name, str(spec["tag"]), bool(spec["build"]), lab_dir / ctx if ctx else None
        )
    prepare = {
        pid: Prepare(pid, p["title"], _where(p["where"], f"prepare.{pid}"), p["run"], p["undo"])
        for pid, p in r.get("prepare", {}).items()
    }
    steps = []
    for s in r["steps"]:
        for ref, known, what in (
            (s.get("images", []), images, "images"),
            (s.get("prepare", []), prepare, "prepare"),
        ):
            for name in ref:
                if name not in known:
                    raise LabError(f"{path}: step {s['id']}: {what}: unknown {name!r}")
        for m in s["manifests"]:
            if not (lab_dir / "manifests" / m).is_file():
                raise LabError(f"{path}: step {s['id']}: no manifest {m}")
        steps.append(
            Step(
                s["id"],
                s["title"],
                tuple(s["manifests"]),
                tuple(s.get("images", [])),
                tuple(s.get("prepare", [])),
                tuple(WaitFor(w["kind"], w["name"], w["namespace"]) for w in s.get("wait", [])),
                bool(s.get("optional", False)),
            )
        )
    checks = tuple(_check(c, values, path) for c in r["checks"])
    ids = [c.id for c in checks]
    for c in checks:
        for dep in c.after:
            if dep not in ids[: ids.index(c.id)]:
                raise LabError(f"{path}: check {c.id}: after: {dep!r} is not an earlier check")
    return Lab(lab_id, r["title"], lab_dir, values, tuple(steps), prepare, images, checks)


def _where(value: str, key: str) -> str:
    if value in WHERES or (value.startswith("pod/") and len(value) > 4):
        return value
    raise LabError(f"{key}: on: {value!r} is not one of {', '.join(WHERES)}, pod/<name>")


def _check(c: dict, values: dict, path: Path) -> Check:
    key = f"{path}: check {c.get('id')}"
    where = _where(c["where"], key)
    run = {}
    for name, spec in c["run"].items():
        cmd = Command(spec["cmd"], True) if isinstance(spec, dict) else Command(spec, False)
        if where.startswith("pod/"):
            # Runs inside the pod: kubectl exec on master, where kubectl works.
            pod = where.removeprefix("pod/")
            inner = f"{values['kubectl']} exec {pod} -- sh -c {shlex.quote(cmd.cmd)}"
            cmd = Command(inner, True)
        run[name] = cmd
    from k8slab.checks.kinds import KINDS

    for a in c["expect"]:
        kind = KINDS.get(a.get("kind"))
        if kind is None:
            raise LabError(f"{key}: unknown kind {a.get('kind')!r} (kinds: {', '.join(KINDS)})")
        params = set(a) - {"kind"}
        missing = set(kind.required) - params
        extra = params - set(kind.required) - set(kind.optional)
        if missing or extra:
            raise LabError(
                f"{key}: kind {a['kind']}: missing {sorted(missing)}, unknown {sorted(extra)}"
            )
        outputs = [a[o] for o in kind.outputs] + [
            a[o]["output"] for o in ("first", "second") if isinstance(a.get(o), dict)
        ]
        for o in outputs:
            if o not in run:
                raise LabError(f"{key}: kind {a['kind']} reads {o!r}, which is not in run:")
    return Check(
        c["id"],
        c["title"],
        where,
        run,
        tuple(c["expect"]),
        " ".join(c["hint"].split()),
        tuple(c.get("after", [])),
    )


# --- rendering -------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    filename: str  # one object per file, numbered in apply order
    kind: str
    name: str
    namespace: str | None
    text: str
    obj: dict


def render_manifests(
    lab: Lab, topo: Topology, steps: tuple[Step, ...] | None = None
) -> list[Manifest]:
    """Every object of the given steps (all by default), each template once, in step order."""
    import jinja2

    from k8slab import render

    context = {**topo.cluster_vars(), **lab.values, "master": topo.control_plane.name}
    templates: list[str] = []
    for step in steps if steps is not None else lab.steps:
        templates += [m for m in step.manifests if m not in templates]
    out = []
    for template in templates:
        rel = f"{lab.root.name}/manifests/{template}"
        try:
            text = render.render(f"manifests/{template}", context, root=lab.root)
        except jinja2.TemplateError as e:
            raise LabError(f"{rel}: {e.message}") from None
        docs = [d for d in yaml.safe_load_all(text) if d]
        if len(docs) != 1:
            raise LabError(f"{rel}: expected exactly one object, found {len(docs)}")
        obj = docs[0]
        meta = obj["metadata"]
        kind = obj["kind"]
        filename = f"{len(out) + 1:02d}-{kind.lower()}-{meta['name']}.yaml"
        out.append(Manifest(filename, kind, meta["name"], meta.get("namespace"), text, obj))
    return out
