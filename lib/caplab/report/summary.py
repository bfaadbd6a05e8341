"""What one run found, read back from its folder `results/<notebook>/<tier>/`: the papers it tests, the claims with
their verdicts and evidence, the headline figures, provenance and the files a reader may open. The report's header
and the index's rows are both drawn from this, so they cannot disagree.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caplab.report.registry import papers

NO_VALUE = "—"
MAX_HEADLINE_FIGURES = 4
FALLBACK_FIGURES = 2        # where no claim names a figure: the first ones the notebook recorded
TIER_SCALE = {"smoke": "smoke test of the machinery, not evidence",
              "cpu": "small-scale analogue: tiny models on synthetic tasks",
              "gpu": "the paper's models"}


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def evidence_text(evidence: list[dict[str, Any]]) -> str:
    """`name = value [lo, hi]; ...` for the metrics a verdict read."""
    parts = []
    for m in evidence:
        v = m.get("value")
        text = f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
        if isinstance(m.get("lo"), (int, float)) and isinstance(m.get("hi"), (int, float)):
            text += f" [{m['lo']:.4g}, {m['hi']:.4g}]"
        parts.append(f"{m['name']} = {text}")
    return "; ".join(parts)


def _unless_said(reason: str, evidence: list[dict[str, Any]]) -> str:
    """The evidence as text where the verdict's reason does not already name its metrics, else nothing."""
    if all(m.get("name") and m["name"] in reason for m in evidence):
        return ""
    return evidence_text(evidence)


def rate_text(value: Any) -> str:
    """A measured rate (a fraction: false-positive rate, power) as a percentage, or an em dash where the claim has
    none (no control measured its current rule)."""
    if isinstance(value, dict):
        value = value.get("value", value.get("rate"))
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{100 * value:.3g} %"
    return NO_VALUE


@dataclass
class RunSummary:
    notebook: str
    tier: str
    folder: Path
    papers: list[dict[str, str]]                 # id, title, arxiv of each paper the notebook tests
    scale: str
    claims: list[dict[str, Any]]                 # claims.json rows + evidence_text, fp_rate_text, power_text
    headline_figures: list[str]                  # figure stems, in claim order
    recorded_figures: list[str] = field(default_factory=list)     # every figure, in the order recorded
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        run = self.provenance.get("run") or {}
        return run.get("status", "ok (interactive)" if self.provenance else "unknown")

    @property
    def git_sha(self) -> str | None:
        return (self.provenance.get("git") or {}).get("sha")

    @property
    def wall_s(self) -> float | None:
        run = self.provenance.get("run") or {}
        return run.get("wall_s", self.provenance.get("wall_s"))

    def figure_file(self, name: str, ext: str = "png") -> Path:
        return self.folder / "figures" / f"{name}.{ext}"

    def files(self) -> dict[str, Path]:
        """The files a reader can open, those that exist: report, notebook, run log, claims."""
        candidates = {"report": self.folder / "report.html", "notebook": self.folder / f"{self.notebook}.ipynb",
                      "run.log": self.folder / "run.log", "claims": self.folder / "claims.json"}
        return {k: p for k, p in candidates.items() if p.exists()}


def headline_figures(claims: list[dict[str, Any]], recorded: list[str], folder: Path) -> list[str]:
    """The figures the claims' evidence points to (in claim order), else the first figures recorded."""
    names: list[str] = []
    for c in claims:
        for m in c.get("evidence") or []:
            name = m.get("figure")
            if name and name not in names and (folder / "figures" / f"{name}.png").exists():
                names.append(name)
    if not names:
        names = [n for n in recorded if (folder / "figures" / f"{n}.png").exists()][:FALLBACK_FIGURES]
    return names[:MAX_HEADLINE_FIGURES]


def read_run(folder: Path, notebook: str, tier: str) -> RunSummary | None:
    """The summary of the run in `folder`, or None where nothing was written there."""
    claims_doc = read_json(folder / "claims.json")
    prov = read_json(folder / "provenance.json") or {}
    if claims_doc is None and not prov:
        return None
    claims_doc = claims_doc or {}
    claims = [dict(c, evidence_text=evidence_text(c.get("evidence") or []),
                   evidence_note=_unless_said(c.get("reason") or "", c.get("evidence") or []),
                   fp_rate_text=rate_text(c.get("false_positive_rate")), power_text=rate_text(c.get("power")))
              for c in claims_doc.get("claims", [])]
    metrics = read_json(folder / "metrics.json") or {}
    tested = [{"id": p.id, "title": p.title, "arxiv": p.arxiv} for p in papers().values() if p.notebook == notebook]
    return RunSummary(notebook=notebook, tier=tier, folder=folder, papers=tested,
                      scale=claims_doc.get("scale") or TIER_SCALE.get(tier, ""), claims=claims,
                      headline_figures=headline_figures(claims, metrics.get("figures") or [], folder),
                      recorded_figures=list(metrics.get("figures") or []),
                      provenance=prov)
