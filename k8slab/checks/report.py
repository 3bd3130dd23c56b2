"""One renderer for verify results: a table for people, JSON for tools, JUnit XML for CI."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET

from k8slab.checks.engine import Report

FORMATS = ("table", "json", "junit")
# Longer evidence is cut (the bundle of --record keeps whole outputs): a failure's cause comes
# last ("... exited 6: curl: (6) Could not resolve host"), so failures keep more lines.
EVIDENCE_LINES = {"pass": 2, "skip": 2, "fail": 20, "error": 8}
_COLOURS = {"pass": "32", "fail": "31", "error": "31;1", "skip": "2"}


def render(report: Report, fmt: str, width: int = 80, colour: bool = False) -> str:
    if fmt == "table":
        return table(report, width, colour)
    return {"json": as_json, "junit": junit}[fmt](report)


def summary(report: Report, width: int = 80) -> str:
    """The totals, then which checks failed or could not run, by id and host."""
    t = report.totals
    source = " (replayed from a bundle)" if report.replayed else ""
    lines = textwrap.wrap(
        f"{report.lab}: {len(report.results)} results - {t['pass']} passed, {t['fail']} failed, "
        f"{t['skip']} skipped, {t['error']} errors in {report.seconds:.1f}s{source}",
        width,
    )
    down = _unreachable(report)
    for status, label in (("fail", "failed"), ("error", "errors")):
        hosts: dict[str, list[str]] = {}
        for r in report.results:
            if r.status == status and r.host not in down:
                hosts.setdefault(r.id, []).append(r.host)
        parts = [f"{i} on {', '.join(h)}" for i, h in hosts.items()]
        if status == "error":
            parts = [f"{h} unreachable (all {n} checks)" for h, n in down.items()] + parts
        if parts:
            text = "; ".join(parts)
            lines += textwrap.wrap(
                f"{label}: {text}",
                width,
                subsequent_indent=" " * (len(label) + 2),
                break_on_hyphens=False,
            )
    if report.note:
        lines += textwrap.wrap(report.note, width, break_on_hyphens=False)
    return "\n".join(lines)


_CONNECT = ("cannot connect", "authentication failed", "host key does not match", "no SSH key")


def _unreachable(report: Report) -> dict[str, int]:
    """Hosts whose every row is the same SSH error: one item in the summary, not one per
    check."""
    rows: dict[str, list] = {}
    for r in report.results:
        rows.setdefault(r.host, []).append(r)
    return {
        host: len(rs)
        for host, rs in rows.items()
        if all(r.status == "error" for r in rs)
        and len({r.evidence for r in rs}) == 1
        and any(word in rs[0].evidence for word in _CONNECT)
    }


def table(report: Report, width: int = 80, colour: bool = False) -> str:
    """One row per check and host, fitted to `width` columns: evidence wraps under its column
    (at most EVIDENCE_LINES of them), hints wrap under the row."""
    rows = [("CHECK", "HOST", "STATUS", "EVIDENCE", "", "")]
    rows += [(r.id, r.host, r.status.upper(), r.evidence, r.hint, r.status) for r in report.results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    left = sum(widths) + 6
    below = width - left < 30  # too narrow for a column: evidence goes under the row
    ev_width = width - 4 if below else width - left
    hint_indent = " " * min(widths[0] + 2, 8)
    lines = []
    # An unreachable host errs on every check the same way: say it once per host.
    said: dict[tuple[str, str], str] = {}
    for check, host, status, evidence, hint, state in rows:
        if state == "error" and (host, evidence) in said:
            evidence, hint = f"the same error as {said[(host, evidence)]} above", ""
        said.setdefault((host, evidence), check)
        cells = [c.ljust(w) for c, w in zip((check, host, status), widths, strict=True)]
        if colour and state:
            cells[2] = f"\033[{_COLOURS[state]}m{cells[2]}\033[0m"
        wrapped = _wrap(evidence, ev_width, EVIDENCE_LINES.get(state, 1))
        if below:
            lines.append("  ".join(cells).rstrip())
            lines += ["    " + w for w in wrapped]
        else:
            lines.append("  ".join(cells) + "  " + (wrapped[0] if wrapped else ""))
            lines += [" " * left + w for w in wrapped[1:]]
        if hint:
            lines += textwrap.wrap(
                "hint: " + hint,
                width,
                initial_indent=hint_indent,
                subsequent_indent=hint_indent + "      ",
                # a hint's commands are copied: never split `set-hostname` or a long path
                break_on_hyphens=False,
                break_long_words=False,
            )
    lines.append(summary(report, width))
    return "\n".join(line.rstrip() for line in lines)


def _wrap(text: str, width: int, most: int) -> list[str]:
    lines = textwrap.wrap(text, max(width, 20), break_on_hyphens=False) or [""]
    if len(lines) > most:
        lines = lines[:most]
        lines[-1] = lines[-1][: max(width, 20) - 3] + "..."
    return lines


def as_json(report: Report) -> str:
    return json.dumps(
        {
            "lab": report.lab,
            "title": report.title,
            "replayed": report.replayed,
            "checks": [
                {
                    "id": r.id,
                    "title": r.title,
                    "host": r.host,
                    "status": r.status,
                    "evidence": r.evidence,
                    "hint": r.hint,
                    "seconds": r.seconds,
                }
                for r in report.results
            ],
            "totals": {**report.totals, "checks": len(report.results)},
            "seconds": round(report.seconds, 3),
            **({"note": report.note} if report.note else {}),
        },
        indent=2,
        ensure_ascii=False,
    )


def junit(report: Report) -> str:
    t = report.totals
    suite = ET.Element(
        "testsuite",
        name=f"labctl verify {report.lab}",
        tests=str(len(report.results)),
        failures=str(t["fail"]),
        errors=str(t["error"]),
        skipped=str(t["skip"]),
        time=f"{report.seconds:.3f}",
    )
    for r in report.results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{report.lab}.{r.id}",
            name=f"{r.id}@{r.host}",
            time=f"{r.seconds:.3f}",
        )
        if r.status == "fail":
            ET.SubElement(case, "failure", message=r.evidence).text = f"hint: {r.hint}"
        elif r.status == "error":
            ET.SubElement(case, "error", message=r.evidence).text = f"hint: {r.hint}"
        elif r.status == "skip":
            ET.SubElement(case, "skipped", message=r.evidence)
        ET.SubElement(case, "system-out").text = r.evidence
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode")
