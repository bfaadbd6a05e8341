"""The replication scorecard: `results/index.html` and `results/scorecard.md`, built from what the runs wrote.

Every registered paper appears, with each run found under `results/<notebook>/<tier>/` (its claims.json and
provenance.json) and, for a paper never run, its claims as "not run". Claims are read from the runs' own files,
so the scorecard shows exactly the verdicts the reports show. Each row also says what moved since the previous run
of the same paper and tier (from `results/history.jsonl`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from caplab.report import history
from caplab.report.registry import TIERS, papers
from caplab.report.rules import NOT_RUN
from caplab.report.summary import headline_figures, rate_text, read_run
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
    links: dict[str, str] = field(default_factory=dict)         # report, notebook, run.log: relative to results/
    thumbnail: str | None = None     # the headline figure, relative to results/
    wall_s: float | None = None
    git: str | None = None
    change: history.Change | None = None


def collect(results: Path) -> list[RunRow]:
    rows = []
    entries = history.read(results)
    for paper in papers().values():
        found = False
        for tier in TIERS:
            folder = results / paper.notebook / tier
            run = read_run(folder, paper.notebook, tier)
            interrupted = _read_json(folder.with_name(f"{tier}.interrupted.json"))
            if run is None and interrupted is None:
                continue
            found = True
            own = [c.id for c in paper.claims]
            if run is None:              # interrupted before any run of this paper and tier finished
                status, claims = _interrupted(interrupted, None, paper, [])
                rows.append(RunRow(paper.id, paper.title, paper.arxiv, tier, status, None, {}, claims))
                continue
            claims = [c for c in run.claims if c.get("claim") in own]
            status = run.status
            if interrupted is not None:
                status, claims = _interrupted(interrupted, status, paper, claims)
            links = {name: str(path.relative_to(results)) for name, path in run.files().items()}
            figures = headline_figures(claims, run.recorded_figures, run.folder)   # this paper's own claims
            thumb = run.figure_file(figures[0]) if figures else None
            rows.append(RunRow(paper.id, paper.title, paper.arxiv, tier, status, links.get("report"),
                               run.provenance, claims, links,
                               str(thumb.relative_to(results)) if thumb else None, run.wall_s, run.git_sha,
                               history.change(entries, paper.notebook, tier, own)))
        if not found:
            rows.append(RunRow(paper.id, paper.title, paper.arxiv, None, "never run", None, {},
                               [{"claim": c.id, "statement": c.statement, "verdict": NOT_RUN,
                                 "reason": "no run found under results/", "paper_value": c.paper_value,
                                 "evidence_text": "", "rule": c.rule.describe(), **_rates(c)}
                                for c in paper.claims]))
    return rows


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _interrupted(record: dict[str, Any], previous: str | None, paper, claims: list[dict]) -> tuple[str, list]:
    """The status of a run whose last attempt was interrupted: the previous run's results (and report link) stay."""
    status = f"interrupted {record.get('ended', '')}".strip()
    if previous is not None:
        return f"{status}; previous run kept ({previous})", claims
    return status, [{"claim": c.id, "statement": c.statement, "verdict": NOT_RUN, "evidence_text": "",
                     "reason": "the run was interrupted before it finished", "paper_value": c.paper_value,
                     "rule": c.rule.describe(), **_rates(c)} for c in paper.claims]


def _rates(claim) -> dict[str, str]:
    """The rule's measured false-positive rate and power, as text, for a claim with no run to read them from."""
    oc = claim.operating()
    return {"fp_rate_text": rate_text(oc["false_positive_rate"]), "power_text": rate_text(oc["power"])}


def _markdown(rows: list[RunRow], changes: list[tuple[RunRow, str, str, str]]) -> str:
    lines = ["# caplab replication scorecard", "",
             "Verdicts are computed from measured evidence by each claim's stated rule. The cpu tier is a "
             "small-scale analogue (tiny models on synthetic tasks); the smoke tier checks the machinery only.", ""]
    if changes:
        lines += ["Verdicts that moved since the previous run:", ""]
        lines += [f"- {r.paper} {r.tier}: `{claim}` {old} -> {new}" for r, claim, old, new in changes] + [""]
    lines += ["| paper | tier | status | claim | verdict | evidence | false-positive rate | power | when, on what |",
              "|---|---|---|---|---|---|---|---|---|"]
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
                         f"{evidence} | {c.get('fp_rate_text') or '-'} | {c.get('power_text') or '-'} | {when} |")
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
    changes = [(r, claim, old, new) for r in rows if r.change for claim, old, new in r.change.moved]
    compared = sum(1 for r in rows if r.change and r.change.previous)
    html = env.get_template("index.html.j2").render(rows=rows, counts=counts, changes=changes, compared=compared)
    atomic_write_text(results / "index.html", html)
    atomic_write_text(results / "scorecard.md", _markdown(rows, changes))
    return results / "index.html"
