"""The replication scorecard: `results/index.html` and `results/scorecard.md`, built from what the runs wrote.

Every registered paper appears, with each run found under `results/<notebook>/<tier>/` (its claims.json and
provenance.json) and, for a paper never run, its claims as "not run". Claims are read from the runs' own files,
so the scorecard shows exactly the verdicts the reports show.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from caplab.report.registry import TIERS, papers
from caplab.report.rules import NOT_RUN
from caplab.substrate.cache import atomic_write_text


@dataclass
class RunRow:
    paper: str
    title: str
    arxiv: str
    tier: str | None
    status: str                      # ok / failed / never run / interrupted (...)
    report: str | None               # link relative to results/
    provenance: dict[str, Any]
    claims: list[dict[str, Any]] = field(default_factory=list)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _evidence_text(evidence: list[dict[str, Any]]) -> str:
    parts = []
    for m in evidence:
        v = m.get("value")
        text = f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
        if m.get("lo") is not None and m.get("hi") is not None:
            text += f" [{m['lo']:.4g}, {m['hi']:.4g}]"
        parts.append(f"{m['name']} = {text}")
    return "; ".join(parts)


def collect(results: Path) -> list[RunRow]:
    rows = []
    for paper in papers().values():
        found = False
        for tier in TIERS:
            folder = results / paper.notebook / tier
            claims_doc = _read(folder / "claims.json")
            prov = _read(folder / "provenance.json") or {}
            interrupted = _read(folder.with_name(f"{tier}.interrupted.json"))
            if claims_doc is None and not prov and interrupted is None:
                continue
            found = True
            own = {c.id for c in paper.claims}
            claims = [dict(c, evidence_text=_evidence_text(c.get("evidence", [])))
                      for c in (claims_doc or {}).get("claims", []) if c.get("claim") in own]
            status = prov.get("run", {}).get("status", "ok (interactive)" if prov else "unknown")
            if interrupted is not None:
                status, claims = _interrupted(interrupted, status if claims_doc or prov else None, paper, claims)
            report = folder / "report.html"
            rows.append(RunRow(paper.id, paper.title, paper.arxiv, tier, status,
                               str(report.relative_to(results)) if report.exists() else None, prov, claims))
        if not found:
            rows.append(RunRow(paper.id, paper.title, paper.arxiv, None, "never run", None, {},
                               [{"claim": c.id, "statement": c.statement, "verdict": NOT_RUN,
                                 "reason": "no run found under results/", "paper_value": c.paper_value,
                                 "evidence_text": "", "rule": c.rule.describe()} for c in paper.claims]))
    return rows


def _interrupted(record: dict[str, Any], previous: str | None, paper, claims: list[dict]) -> tuple[str, list]:
    """The status of a run whose last attempt was interrupted: the previous run's results (and report link) stay."""
    status = f"interrupted {record.get('ended', '')}".strip()
    if previous is not None:
        return f"{status}; previous run kept ({previous})", claims
    return status, [{"claim": c.id, "statement": c.statement, "verdict": NOT_RUN, "evidence_text": "",
                     "reason": "the run was interrupted before it finished", "paper_value": c.paper_value,
                     "rule": c.rule.describe()} for c in paper.claims]


def _markdown(rows: list[RunRow]) -> str:
    lines = ["# caplab replication scorecard", "",
             "Verdicts are computed from measured evidence by each claim's stated rule. The cpu tier is a "
             "small-scale analogue (tiny models on synthetic tasks); the smoke tier checks the machinery only.", "",
             "| paper | tier | status | claim | verdict | evidence | when, on what |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        when = ""
        if r.provenance:
            git = r.provenance.get("git") or {}
            when = f"{r.provenance.get('started', '')} · {(git.get('sha') or '')[:10]}" \
                   f"{' dirty' if git.get('dirty') else ''} · {r.provenance.get('cpu', '')}" \
                   f"{' · ' + r.provenance['gpu'] if r.provenance.get('gpu') else ''}"
        for c in r.claims:
            evidence = (c.get("evidence_text") or c.get("reason", "")).replace("|", "/")
            lines.append(f"| {r.paper} | {r.tier or '-'} | {r.status} | `{c['claim']}` | **{c['verdict']}** | "
                         f"{evidence} | {when} |")
    return "\n".join(lines) + "\n"


def build(results: Path) -> Path:
    """Write index.html and scorecard.md under `results`; returns the index path."""
    results.mkdir(parents=True, exist_ok=True)
    rows = collect(results)
    env = jinja2.Environment(loader=jinja2.PackageLoader("caplab.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]))
    counts: dict[str, int] = {}
    for r in rows:
        for c in r.claims:
            counts[c["verdict"]] = counts.get(c["verdict"], 0) + 1
    html = env.get_template("index.html.j2").render(rows=rows, counts=counts)
    atomic_write_text(results / "index.html", html)
    atomic_write_text(results / "scorecard.md", _markdown(rows))
    return results / "index.html"
