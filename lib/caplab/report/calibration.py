"""Operating characteristics of the verdict rules, and the gate that uses them.

A rule's false-positive rate (how often a null world, with no effect and this run's kind of noise, reads
"reproduced") and its power (how often a world with the paper's effect, scaled to the analogue, reads
"reproduced") are measured by the controls in `caplab.controls` and recorded, one JSON file per paper, under
`caplab/controls/measured/` (`python -m caplab controls --write`). This module reads those records (data only, it
imports no experiment code) and gates a claim's verdict:

- no record, a record of another rule (the rule changed since), or a false-positive rate above 5 %: the rule is
  not calibrated, and the claim is "inconclusive (rule not calibrated)", whatever the rule alone reads;
- "not reproduced" from a rule whose power is below 80 %: "inconclusive (underpowered)", since the experiment
  would often miss the effect even if it were there.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from caplab.report.rules import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Capped, Verdict

FPR_BOUND = 0.05
POWER_BOUND = 0.8
MEASURED = Path(__file__).resolve().parents[1] / "controls" / "measured"


@dataclass(frozen=True)
class OperatingCharacteristics:
    claim: str
    rule: str                          # the measured rule's text (`measured_text`): a record of another rule does not count
    false_positive_rate: float         # share of null draws read "reproduced"
    null_draws: int
    power: float | None                # share of planted draws read "reproduced" (None: no planted world)
    planted_draws: int
    null_world: str
    planted_effect: str
    seed: int
    measured: str = ""                 # when, and at which commit
    git: str = ""
    # which draws read "reproduced" (indices into the null and planted draws): lets `make test` replay a sample of
    # draws and check each one's outcome instead of re-measuring them all (None: an older record without them)
    null_hits: tuple[int, ...] | None = None
    planted_hits: tuple[int, ...] | None = None

    def __post_init__(self):
        for name in ("null_hits", "planted_hits"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(int(i) for i in value))

    def as_dict(self) -> dict:
        out = asdict(self)
        for name in ("null_hits", "planted_hits"):
            out[name] = None if out[name] is None else list(out[name])
        return out


@lru_cache(maxsize=1)
def recorded() -> dict[str, OperatingCharacteristics]:
    """Every measured record, by claim id."""
    out = {}
    for path in sorted(MEASURED.glob("*.json")):
        for row in json.loads(path.read_text())["controls"]:
            out[row["claim"]] = OperatingCharacteristics(**row)
    return out


def under_cap(rule):
    """The rule a control measures: the claim's rule, or for a capped claim the rule under the cap."""
    return rule.rule if isinstance(rule, Capped) else rule


def measured_text(rule) -> str:
    """The text a record keeps of the rule its control measured (`under_cap`: the cap's reason changes nothing a
    control measures)."""
    return under_cap(rule).describe()


def status(claim) -> tuple[OperatingCharacteristics | None, str | None]:
    """(record, problem): the claim's measured record, and why the rule is not calibrated (None when it is)."""
    oc = recorded().get(claim.id)
    if oc is None:
        return None, "no null and planted controls measured for this claim"
    if oc.rule != measured_text(claim.rule):
        return oc, "the rule changed since its controls were measured (python -m caplab controls --write)"
    if oc.false_positive_rate > FPR_BOUND:
        return oc, (f"a null world reads 'reproduced' in {oc.false_positive_rate:.0%} of {oc.null_draws} draws "
                    f"(bound {FPR_BOUND:.0%})")
    return oc, None


def gate(claim, verdict: Verdict) -> Verdict:
    """The claim's verdict after its rule's operating characteristics are taken into account."""
    if verdict.verdict not in (REPRODUCED, NOT_REPRODUCED):
        return verdict
    oc, problem = status(claim)
    alone = f"the rule alone reads {verdict.verdict}: {verdict.reason}"
    if problem:
        return Verdict(INCONCLUSIVE, f"rule not calibrated: {problem}; {alone}", verdict.evidence)
    if verdict.verdict == NOT_REPRODUCED and (oc.power is None or oc.power < POWER_BOUND):
        found = "was never measured" if oc.power is None else f"is {oc.power:.0%} of {oc.planted_draws} draws"
        return Verdict(INCONCLUSIVE, f"underpowered: the rule's power at the planted effect ({oc.planted_effect}) "
                                     f"{found} (needs {POWER_BOUND:.0%}); {alone}", verdict.evidence)
    return verdict
