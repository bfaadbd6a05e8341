"""The run history, `results/history.jsonl`: one line per run of a notebook at a tier, appended by the runner.

    {"notebook": "budget", "tier": "smoke", "time": "2026-11-29T23:40:02+00:00", "git": "b88aadf...", "dirty": false,
     "status": "ok", "wall_s": 212.4, "verdicts": {"budget.sft_wins_small": "inconclusive", ...},
     "cell_seconds": [0.01, 3.2, ...]}

The index reads it to say what changed since the previous run of the same notebook and tier (which verdicts
moved, old -> new); the runner reads it to estimate how long a run will take.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILE = "history.jsonl"


def entry_for_run(output_dir: Path, *, notebook: str, tier: str) -> dict[str, Any]:
    """The history line of the run whose files are in `output_dir` (claims.json, provenance.json, the notebook)."""
    claims = _read_json(output_dir / "claims.json") or {}
    prov = _read_json(output_dir / "provenance.json") or {}
    run = prov.get("run") or {}
    git = prov.get("git") or {}
    return {"notebook": notebook, "tier": tier, "time": run.get("started") or prov.get("started"),
            "git": git.get("sha"), "dirty": bool(git.get("dirty")), "status": run.get("status", "ok"),
            "wall_s": run.get("wall_s", prov.get("wall_s")),
            "verdicts": {c["claim"]: c["verdict"] for c in claims.get("claims", []) if "claim" in c},
            "cell_seconds": _cell_seconds(output_dir / f"{notebook}.ipynb")}


def append(results: Path, entry: dict[str, Any]) -> None:
    """Add one run to the history (one JSON line, appended whole)."""
    results.mkdir(parents=True, exist_ok=True)
    with open(results / FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, default=str) + "\n")


def read(results: Path) -> list[dict[str, Any]]:
    """Every run in the order they were recorded; a damaged line is skipped, not fatal."""
    path = results / FILE
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict) and "notebook" in item and "tier" in item:
            entries.append(item)
    return entries


def last_runs(entries: list[dict[str, Any]], tier: str, *, status: str | None = "ok") -> dict[str, dict]:
    """The latest run of each notebook at `tier` (with that status, if given)."""
    latest: dict[str, dict] = {}
    for e in entries:
        if e["tier"] == tier and (status is None or e.get("status") == status):
            latest[e["notebook"]] = e
    return latest


@dataclass
class Change:
    """What moved between the previous and the latest run of a notebook at a tier."""
    previous: dict[str, Any] | None
    latest: dict[str, Any] | None
    moved: list[tuple[str, str, str]] = field(default_factory=list)     # (claim, old verdict, new verdict)
    added: list[str] = field(default_factory=list)                      # claims without a previous verdict

    @property
    def first_run(self) -> bool:
        return self.latest is not None and self.previous is None


def change(entries: list[dict[str, Any]], notebook: str, tier: str, claims: list[str] | None = None) -> Change:
    """Compare the two latest runs of `notebook` at `tier`, limited to `claims` when given."""
    runs = [e for e in entries if e["notebook"] == notebook and e["tier"] == tier]
    latest = runs[-1] if runs else None
    previous = runs[-2] if len(runs) > 1 else None
    result = Change(previous, latest)
    if latest is None or previous is None:
        return result
    old, new = previous.get("verdicts") or {}, latest.get("verdicts") or {}
    for claim in claims if claims is not None else list(new):
        if claim not in new:
            continue
        if claim not in old:
            result.added.append(claim)
        elif old[claim] != new[claim]:
            result.moved.append((claim, old[claim], new[claim]))
    return result


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _cell_seconds(executed: Path) -> list[float]:
    """Per code cell, the seconds papermill recorded (the runner's estimates for the next run)."""
    nb = _read_json(executed)
    if not nb:
        return []
    return [round(float((c.get("metadata", {}).get("papermill") or {}).get("duration") or 0.0), 2)
            for c in nb.get("cells", []) if c.get("cell_type") == "code"]
