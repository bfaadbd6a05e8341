"""Controls: would a null world also read "reproduced"? Would the experiment find the paper's effect?

For every judged claim, a `Control` simulates the notebook's tidy tables (the same columns the cpu tier produces,
with realistic noise: seeds, evaluation items, shared items across arms) in two worlds:

- the null world: no effect, only the noise (and, where relevant, the no-skill baselines the run records);
- the planted world: the effect the paper reports, scaled to the analogue.

Each simulated table goes through the same library functions as the notebook (`caplab.papers.<paper>`,
`caplab.science`, `caplab.stats`) and the claim's own rule. The share of "reproduced" under the null is the rule's
false-positive rate (at least 200 draws, at most 5 % allowed), under the planted effect its power. The measured
rates are recorded per paper in `measured/<paper>.json` (`python -m caplab controls --write`); the registry's
gate (`caplab.report.calibration`) turns a claim whose rule is not calibrated into "inconclusive", and `make test`
re-measures every control (`tests/test_controls.py`).

One module per paper, `caplab.controls.<paper>`, holds a list `CONTROLS`.
"""
from __future__ import annotations

import importlib
import json
import math
import re
import zlib
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from caplab.report import calibration
from caplab.report.calibration import OperatingCharacteristics
from caplab.report.rules import REPRODUCED, Capped, Metric

Evidence = Mapping[str, "Metric | tuple | dict | float | bool | None"]


@dataclass(frozen=True)
class Control:
    """The null and planted worlds of one claim. `simulate(rng, planted)` draws one world's tidy tables, pushes
    them through the notebook's functions and returns the evidence the claim's rule reads (metric name -> Metric,
    a (value, lo, hi) tuple, a dict of Metric fields, or a bare value). A world in which the analysis cannot be
    done (a fit that fails) may raise ValueError or RuntimeError: that draw reads "not reproduced"."""

    claim: str
    null_world: str
    planted_effect: str
    simulate: Callable[[np.random.Generator, bool], Evidence]
    null_draws: int = 200
    planted_draws: int = 100
    # why this control is too slow for `make test` (seconds per draw); allowed only for a capped claim, whose
    # rates are informative (is the rule under the cap ready?) but gate nothing
    slow: str | None = None


MIN_NULL_DRAWS = 200


def check_draws(control: Control, null_draws: int) -> None:
    """A judged claim's false-positive rate rests on at least 200 null draws; a capped claim (never judged) may
    measure the rule under its cap on fewer, and only it may be marked slow."""
    capped = isinstance(_claim_rule(control.claim), Capped)
    if null_draws < MIN_NULL_DRAWS and not capped:
        raise ValueError(f"{control.claim}: a false-positive rate needs at least {MIN_NULL_DRAWS} null draws, got "
                         f"{null_draws}")
    if control.slow and not capped:
        raise ValueError(f"{control.claim}: only a capped claim's control may be slow ({control.slow})")


def _claim_rule(claim_id: str):
    from caplab.report.registry import claim
    return claim(claim_id).rule


def as_metrics(evidence: Evidence) -> dict[str, Metric]:
    out = {}
    for name, value in evidence.items():
        if isinstance(value, Metric):
            out[name] = value
        elif isinstance(value, dict):
            out[name] = Metric(**{"name": name, **value})
        elif isinstance(value, tuple):
            v, lo, hi = value
            out[name] = Metric(name, _plain(v), _plain(lo), _plain(hi))
        else:
            out[name] = Metric(name, _plain(value))
    return out


def _plain(x):
    if x is None:
        return None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    x = float(x)
    return None if math.isnan(x) else x


def measured_rule(claim_id: str):
    """The rule whose rates a control measures: the claim's own, or for a claim capped at "inconclusive" until a
    redesign (`Capped`), the rule it applies underneath (so the record says whether that rule is ready)."""
    return calibration.under_cap(_claim_rule(claim_id))


def reads_reproduced(control: Control, rng: np.random.Generator, planted: bool) -> bool:
    try:
        evidence = as_metrics(control.simulate(rng, planted))
    except (ValueError, RuntimeError, np.linalg.LinAlgError):
        return False
    return measured_rule(control.claim).apply(evidence).verdict == REPRODUCED


def measure(control: Control, *, seed: int = 0, null_draws: int | None = None,
            planted_draws: int | None = None) -> OperatingCharacteristics:
    """Run the control: the share of null draws and of planted draws that the claim's rule reads "reproduced" (for
    a capped claim, the rule under the cap). Draw i of the null world uses the generator seeded [seed, 0, i], of the
    planted world [seed, 1, i]; the record keeps which draws read "reproduced" (`replay` checks them)."""
    n0 = control.null_draws if null_draws is None else null_draws
    n1 = control.planted_draws if planted_draws is None else planted_draws
    check_draws(control, n0)
    null_hits = tuple(i for i in range(n0) if draw(control, seed, False, i))
    planted_hits = tuple(i for i in range(n1) if draw(control, seed, True, i))
    return OperatingCharacteristics(claim=control.claim, rule=measured_rule(control.claim).describe(),
                                    false_positive_rate=len(null_hits) / n0, null_draws=n0,
                                    power=(len(planted_hits) / n1) if n1 else None, planted_draws=n1,
                                    null_world=control.null_world, planted_effect=control.planted_effect, seed=seed,
                                    null_hits=null_hits, planted_hits=planted_hits)


def draw(control: Control, seed: int, planted: bool, i: int) -> bool:
    """Whether draw i of the null (planted=False) or planted world reads "reproduced"."""
    return reads_reproduced(control, np.random.default_rng([seed, int(planted), i]), planted)


def replay_sample(record: OperatingCharacteristics, *, null_sample: int = 20, planted_sample: int = 10
                  ) -> list[tuple[bool, int]]:
    """The draws `make test` replays for a recorded control: every null draw recorded as "reproduced" (the false
    positives themselves), plus a fixed random sample of the other null draws and of the planted draws (chosen by
    the claim's name, so a rerun replays the same draws)."""
    rng = np.random.default_rng(zlib.crc32(record.claim.encode()))
    hits = set(record.null_hits or ())
    others = [i for i in range(record.null_draws) if i not in hits]
    chosen = sorted(hits) + sorted(rng.choice(others, size=min(null_sample, len(others)), replace=False).tolist())
    planted = sorted(rng.choice(record.planted_draws, size=min(planted_sample, record.planted_draws),
                                replace=False).tolist())
    return [(False, int(i)) for i in chosen] + [(True, int(i)) for i in planted]


def replay(control: Control, record: OperatingCharacteristics, draws: list[tuple[bool, int]]
           ) -> list[tuple[bool, int, bool]]:
    """Replay recorded draws; the ones whose outcome differs from the record, as (planted, index, now_reproduced)."""
    if record.null_hits is None or record.planted_hits is None:
        raise ValueError(f"{record.claim}: the record has no per-draw outcomes; rerun python -m caplab controls "
                         f"--write")
    hits = {False: set(record.null_hits), True: set(record.planted_hits)}
    out = []
    for planted, i in draws:
        now = draw(control, record.seed, planted, i)
        if now != (i in hits[planted]):
            out.append((planted, i, now))
    return out


def for_paper(paper: str) -> list[Control]:
    """The controls of one paper (its module `caplab.controls.<paper>`; none if it has no module yet)."""
    try:
        module = importlib.import_module(f"caplab.controls.{paper}")
    except ModuleNotFoundError as exc:
        if exc.name != f"caplab.controls.{paper}":
            raise
        return []
    return list(module.CONTROLS)


def write(paper: str, records: list[OperatingCharacteristics]) -> None:
    """Record a paper's measured operating characteristics (replacing the claims measured, keeping the others)."""
    from caplab.paths import repo_root
    from caplab.report import provenance
    from caplab.substrate.cache import atomic_write_text
    path = calibration.MEASURED / f"{paper}.json"
    old = json.loads(path.read_text())["controls"] if path.exists() else []
    git = provenance.git_state(repo_root())
    stamp = {"measured": provenance.now(), "git": (git.get("sha") or "")[:12] + (" dirty" if git.get("dirty") else "")}
    new = {r.claim: {**r.as_dict(), **stamp} for r in records}
    rows = [row for row in old if row["claim"] not in new] + list(new.values())
    rows.sort(key=lambda row: row["claim"])
    text = json.dumps({"paper": paper, "controls": rows}, indent=1)
    text = re.sub(r"\[[\d,\s]+\]", lambda m: "[" + ", ".join(m.group(0)[1:-1].split()).replace(",,", ",") + "]",
                  text)                                        # a draw-index list on one line
    atomic_write_text(path, text + "\n")
    calibration.recorded.cache_clear()
