"""What a notebook hands to the report: evidence (named metrics), figures, tidy tables, then the verdicts.

    params = from_namespace(kappa.Params, globals())     # the notebook's parameters, checked at any depth
    report = Report("kappa", params=params)
    report.record("forgetting_low_minus_full", diff, lo=ci[0], hi=ci[1], figure="forgetting")
    report.figure(fig, "forgetting")
    report.finish()            # applies every claim's rule; writes claims.json, metrics.json, provenance.json

Outputs go to `$CAPLAB_OUTPUT_DIR` (set by the runner to `results/<notebook>/<tier>/`); run interactively, they go
to `results/<notebook>/lab/`, which the scorecard ignores.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from caplab.paths import results_dir
from caplab.report import figures as _figures
from caplab.report import provenance
from caplab.report.registry import TIERS, claims_for_notebook
from caplab.report.rules import Metric
from caplab.substrate.cache import atomic_write_text

OUTPUT_ENV = "CAPLAB_OUTPUT_DIR"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


class Report:
    """Collects one notebook run's evidence and turns it into verdicts by the registry's rules."""

    def __init__(self, notebook: str, *, params=None, tier: str | None = None,
                 output_dir: str | os.PathLike | None = None):
        """`params`: the paper's parameter set (a `caplab.papers.<paper>.Params`, whose `tier` is the run's), or a
        plain dict with `tier` given (fixtures and tests)."""
        if dataclasses.is_dataclass(params):
            if tier is not None and tier != params.tier:
                raise ValueError(f"tier {tier!r} differs from the parameters' tier {params.tier!r}")
            tier = params.tier
        if tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r}; allowed: {TIERS}")
        self.claims = claims_for_notebook(notebook)
        if not self.claims:
            raise ValueError(f"no claims registered for notebook {notebook!r}")
        self.notebook, self.tier = notebook, tier
        self.params = params if dataclasses.is_dataclass(params) else dict(params or {})
        env = os.environ.get(OUTPUT_ENV)
        self.dir = Path(output_dir or env or results_dir() / notebook / "lab")
        self.under_runner = bool(env) and output_dir is None
        self.metrics: dict[str, Metric] = {}
        self.figures: list[str] = []
        self.started, self._t0 = provenance.now(), time.perf_counter()
        _figures.theme()

    # -- evidence ---------------------------------------------------------------------------------------------
    def record(self, name: str, value: float | bool | None, *, lo: float | None = None, hi: float | None = None,
               unit: str = "", note: str = "", figure: str | None = None) -> Metric:
        """Record one measured number (with its interval, if any) under a name the claim rules read."""
        for what, number in (("value", value), ("lo", lo), ("hi", hi)):
            if not (number is None or isinstance(number, (bool, int, float)) or hasattr(number, "item")):
                raise TypeError(f"metric {name!r}: the {what} must be a number, a bool or None, not "
                                f"{type(number).__name__} {number!r:.60}")
        if (lo is None) != (hi is None):
            raise ValueError(f"metric {name!r}: give both ends of the interval or neither")
        if lo is not None and not (lo <= hi):
            raise ValueError(f"metric {name!r}: interval [{lo}, {hi}] is reversed")
        metric = Metric(name, _jsonable(value), _jsonable(lo), _jsonable(hi), unit, note, figure)
        self.metrics[name] = metric
        return metric

    def record_all(self, evidence: dict, *, figure: str | None = None, notes: dict | None = None,
                   note: str = "") -> None:
        """Record a library function's evidence: name -> a bare value, a (value, lo, hi) tuple, or a dict with
        `value` and optional `lo`, `hi`, `note`. An interval that could not be formed (an end missing or not
        finite) is dropped; the note is the item's own, else `notes[name]`, else `note`."""
        for name, item in evidence.items():
            if isinstance(item, dict):
                value, lo, hi, own = item["value"], item.get("lo"), item.get("hi"), item.get("note")
            elif isinstance(item, tuple):
                (value, lo, hi), own = item, None
            else:
                value, lo, hi, own = item, None, None, None
            if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
                lo = hi = None
            self.record(name, value, lo=lo, hi=hi, figure=figure,
                        note=own if own is not None else (notes or {}).get(name, note))

    def figure(self, fig, name: str, *, show: bool = True) -> None:
        """Save a figure as PNG and SVG under `figures/` and show it inline once."""
        import matplotlib.pyplot as plt
        _figures.save(fig, self.dir / "figures", name)
        self.figures.append(name)
        if show:
            try:
                from IPython.display import display
                display(fig)
            except ImportError:
                pass
        plt.close(fig)

    def table(self, frame: pd.DataFrame, name: str) -> Path:
        """Keep a tidy table of the run as CSV under `tables/` (the data behind the figures)."""
        path = self.dir / "tables" / f"{name}.csv"
        atomic_write_text(path, frame.to_csv(index=False))
        return path

    # -- verdicts ---------------------------------------------------------------------------------------------
    def verdicts(self) -> pd.DataFrame:
        rows = []
        for claim in self.claims:
            v = claim.judge(self.metrics, self.tier)
            oc = claim.operating() if claim.controlled else {}
            rows.append({"claim": claim.id, "verdict": v.verdict, "reason": v.reason,
                         "evidence": [m.as_dict() for m in v.evidence], "rule": claim.rule.describe(),
                         "statement": claim.statement, "paper_value": claim.paper_value,
                         "false_positive_rate": oc.get("false_positive_rate"), "power": oc.get("power"),
                         "calibration": oc.get("calibration")})
        return pd.DataFrame(rows)

    def finish(self):
        """Judge every claim of this notebook, write claims.json, metrics.json and provenance.json, and return
        the verdict table for display."""
        table = self.verdicts()
        wall = time.perf_counter() - self._t0
        scale = "smoke test of the machinery, not evidence" if self.tier == "smoke" else (
            "small-scale analogue: tiny models on synthetic tasks" if self.tier == "cpu" else "the paper's models")
        write_json(self.dir / "claims.json", {"notebook": self.notebook, "tier": self.tier, "scale": scale,
                                              "claims": table.to_dict(orient="records")})
        write_json(self.dir / "metrics.json", {"notebook": self.notebook, "tier": self.tier,
                                               "metrics": [m.as_dict() for m in self.metrics.values()],
                                               "figures": self.figures})
        prov = provenance.collect(notebook=self.notebook, tier=self.tier, params=self.params, started=self.started,
                                  ended=provenance.now(), wall_s=wall)
        write_json(self.dir / "provenance.json", prov)
        return _display_table(table, prov, scale)


def _display_table(table: pd.DataFrame, prov: dict, scale: str):
    """The verdicts and provenance as one HTML block for the notebook (and so the rendered report)."""
    try:
        from IPython.display import HTML
    except ImportError:
        return table
    shown = table[["claim", "verdict", "reason", "false_positive_rate", "power", "paper_value", "rule"]].rename(
        columns={"paper_value": "paper's value (comparison, not result)", "reason": "evidence",
                 "false_positive_rate": "false-positive rate (null world)", "power": "power (planted effect)"})
    git = prov["git"]
    facts = {"scale": scale, "tier": prov["tier"],
             "git": f"{git['sha'] or 'not a git checkout'}{' (dirty)' if git['dirty'] else ''}",
             "seeds": json.dumps(prov["seeds"]), "python": prov["python"], "os": prov["os"], "cpu": prov["cpu"],
             "gpu": prov["gpu"] or "none", "started": prov["started"], "wall (notebook)": f"{prov['wall_s']} s",
             "packages": ", ".join(f"{k} {v}" for k, v in prov["packages"].items() if v)}
    prov_html = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>"
                        for k, v in facts.items())
    return HTML("<h3>Verdicts</h3>" + shown.to_html(index=False, escape=True)
                + "<h3>Provenance</h3><table>" + prov_html + "</table>")
