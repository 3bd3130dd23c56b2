"""One renderer for verify results: a table for people, JSON for tools, JUnit XML for CI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from k8slab.checks.engine import Report

FORMATS = ("table", "json", "junit")
EVIDENCE_WIDTH = 110


def render(report: Report, fmt: str) -> str:
    return {"table": table, "json": as_json, "junit": junit}[fmt](report)


def summary(report: Report) -> str:
    t = report.totals
    source = " (replayed from a bundle)" if report.replayed else ""
    return (
        f"{report.lab}: {len(report.results)} results - {t['pass']} passed, {t['fail']} failed, "
        f"{t['skip']} skipped, {t['error']} errors in {report.seconds:.1f}s{source}"
    )


def table(report: Report) -> str:
    rows = [("CHECK", "HOST", "STATUS", "EVIDENCE")]
    hints = {}
    for r in report.results:
        evidence = r.evidence if len(r.evidence) <= EVIDENCE_WIDTH else r.evidence[:107] + "..."
        rows.append((r.id, r.host, r.status.upper(), evidence))
        if r.hint:
            hints[len(rows) - 1] = r.hint
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        lines.append(
            "  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
        )
        if i in hints:
            lines.append(" " * (widths[0] + 2) + "hint: " + hints[i])
    lines.append(summary(report))
    return "\n".join(line.rstrip() for line in lines)


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
