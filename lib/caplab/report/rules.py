"""Verdict rules: how measured evidence becomes reproduced / not reproduced / inconclusive / not run.

A rule is a small object that states itself in words (`describe()`) and is applied to the evidence a notebook
recorded (`apply(evidence)`); the claim registry attaches one rule to each claim, so the report and the scorecard
cannot disagree. Rules read named metrics: a value with an optional interval (lo, hi). Where an interval is given
the rule reads the interval, not the point: a value whose interval straddles the threshold is inconclusive.
A metric the run did not measure gives "not run".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_RUN = "not run"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN)


@dataclass(frozen=True)
class Metric:
    """One measured number: a value, an optional interval, and what it is."""

    name: str
    value: float | bool | None
    lo: float | None = None
    hi: float | None = None
    unit: str = ""
    note: str = ""
    figure: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "lo": self.lo, "hi": self.hi, "unit": self.unit,
                "note": self.note, "figure": self.figure}

    def text(self) -> str:
        def number(v):      # an infinite value is stored as "inf" / "-inf" (JSON has no infinity)
            return str(v) if isinstance(v, (bool, str)) or v is None else f"{v:.4g}"
        core = number(self.value)
        if self.lo is not None and self.hi is not None:
            core += f" [{number(self.lo)}, {number(self.hi)}]"
        return f"{self.name} = {core}{(' ' + self.unit) if self.unit else ''}"


@dataclass(frozen=True)
class Verdict:
    verdict: str
    reason: str
    evidence: tuple[Metric, ...] = field(default=())

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}; allowed: {VERDICTS}")


class Rule:
    """Base class: `metrics()` names what the rule reads; `decide()` gives the verdict when all are present."""

    def metrics(self) -> tuple[str, ...]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def decide(self, evidence: Mapping[str, Metric]) -> tuple[str, str]:
        raise NotImplementedError

    def apply(self, evidence: Mapping[str, Metric]) -> Verdict:
        missing = [m for m in self.metrics() if m not in evidence or evidence[m].value is None]
        used = tuple(evidence[m] for m in self.metrics() if m in evidence)
        if missing:
            return Verdict(NOT_RUN, f"not measured in this run: {', '.join(missing)}", used)
        verdict, reason = self.decide(evidence)
        return Verdict(verdict, reason, used)


def _interval(metric: Metric) -> tuple[float, float]:
    if metric.lo is not None and metric.hi is not None:
        return float(metric.lo), float(metric.hi)
    return float(metric.value), float(metric.value)


@dataclass(frozen=True)
class Above(Rule):
    """Reproduced when the metric (its whole interval) lies above `threshold`; not reproduced when it lies at or
    below it; inconclusive when the interval contains it."""

    metric: str
    threshold: float = 0.0

    def metrics(self):
        return (self.metric,)

    def describe(self):
        return f"reproduced if {self.metric} > {self.threshold:g} (whole interval); not reproduced if its interval " \
               f"lies at or below {self.threshold:g}; inconclusive otherwise"

    def decide(self, evidence):
        m = evidence[self.metric]
        lo, hi = _interval(m)
        if lo > self.threshold:
            return REPRODUCED, f"{m.text()} lies above {self.threshold:g}"
        if hi <= self.threshold:
            return NOT_REPRODUCED, f"{m.text()} lies at or below {self.threshold:g}"
        return INCONCLUSIVE, f"{m.text()} contains {self.threshold:g}"


@dataclass(frozen=True)
class Below(Rule):
    """Reproduced when the metric (its whole interval) lies below `threshold`; mirror image of `Above`."""

    metric: str
    threshold: float = 0.0

    def metrics(self):
        return (self.metric,)

    def describe(self):
        return f"reproduced if {self.metric} < {self.threshold:g} (whole interval); not reproduced if its interval " \
               f"lies at or above {self.threshold:g}; inconclusive otherwise"

    def decide(self, evidence):
        m = evidence[self.metric]
        lo, hi = _interval(m)
        if hi < self.threshold:
            return REPRODUCED, f"{m.text()} lies below {self.threshold:g}"
        if lo >= self.threshold:
            return NOT_REPRODUCED, f"{m.text()} lies at or above {self.threshold:g}"
        return INCONCLUSIVE, f"{m.text()} contains {self.threshold:g}"


@dataclass(frozen=True)
class Holds(Rule):
    """For a yes/no measurement (an exact check): reproduced if true, not reproduced if false."""

    metric: str

    def metrics(self):
        return (self.metric,)

    def describe(self):
        return f"reproduced if {self.metric} is true, not reproduced if false"

    def decide(self, evidence):
        m = evidence[self.metric]
        return (REPRODUCED if bool(m.value) else NOT_REPRODUCED), m.text()


@dataclass(frozen=True)
class AllOf(Rule):
    """Reproduced when every part is; not reproduced when any part is not; inconclusive otherwise."""

    parts: Sequence[Rule]

    def metrics(self):
        return tuple(dict.fromkeys(m for p in self.parts for m in p.metrics()))

    def describe(self):
        return "all of: " + "; ".join(f"({p.describe()})" for p in self.parts)

    def decide(self, evidence):
        results = [p.apply(evidence) for p in self.parts]
        reasons = "; ".join(r.reason for r in results)
        verdicts = {r.verdict for r in results}
        if NOT_REPRODUCED in verdicts:
            return NOT_REPRODUCED, reasons
        if verdicts == {REPRODUCED}:
            return REPRODUCED, reasons
        return INCONCLUSIVE, reasons


@dataclass(frozen=True)
class NotImplementedYet(Rule):
    """The experiment for this claim does not exist yet: always "not run", never a guess."""

    def metrics(self):
        return ()

    def describe(self):
        return "no experiment implemented yet"

    def apply(self, evidence):
        return Verdict(NOT_RUN, "no experiment implemented yet")


@dataclass(frozen=True)
class Brackets(Rule):
    """Reproduced when the metric's interval contains `value` and excludes `exclude` (a law's exponent is 1 and not
    0, say); not reproduced when the interval excludes `value`; inconclusive when it contains both."""

    metric: str
    value: float
    exclude: float | None = None

    def metrics(self):
        return (self.metric,)

    def describe(self):
        if self.exclude is None:
            return f"reproduced if the interval of {self.metric} contains {self.value:g}; not reproduced otherwise"
        return f"reproduced if the interval of {self.metric} contains {self.value:g} and excludes {self.exclude:g}; " \
               f"not reproduced if it excludes {self.value:g}; inconclusive otherwise"

    def decide(self, evidence):
        m = evidence[self.metric]
        lo, hi = _interval(m)
        if not lo <= self.value <= hi:
            return NOT_REPRODUCED, f"{m.text()} excludes {self.value:g}"
        if self.exclude is None:
            return REPRODUCED, f"{m.text()} contains {self.value:g}"
        if lo <= self.exclude <= hi:
            return INCONCLUSIVE, f"{m.text()} contains both {self.value:g} and {self.exclude:g}"
        return REPRODUCED, f"{m.text()} contains {self.value:g}, excludes {self.exclude:g}"


@dataclass(frozen=True)
class Requires(Rule):
    """Inconclusive unless `count` reaches `minimum` (too little readable data to judge); otherwise `rule`."""

    count: str
    minimum: float
    rule: Rule

    def metrics(self):
        return (self.count,)

    def describe(self):
        return f"needs {self.count} >= {self.minimum:g} (else inconclusive); then {self.rule.describe()}"

    def decide(self, evidence):
        m = evidence[self.count]
        if float(m.value) < self.minimum:
            return INCONCLUSIVE, f"{m.text()}: fewer than {self.minimum:g}, the claim cannot be read"
        inner = self.rule.apply(evidence)
        return inner.verdict, f"{m.text()}; {inner.reason}"


@dataclass(frozen=True)
class Equivalent(Rule):
    """A "no effect" claim, read as an equivalence test (two one-sided tests): reproduced when the metric's whole
    interval lies inside (-margin, margin); not reproduced when it lies wholly outside (an effect at least the
    margin); inconclusive otherwise (absence of evidence is not evidence of absence). The margin is stated next to
    the claim in `papers.yaml` and derived from the paper's own numbers."""

    metric: str
    margin: float

    def __post_init__(self):
        if not self.margin > 0:
            raise ValueError(f"equivalence margin of {self.metric} must be positive, got {self.margin}")

    def metrics(self):
        return (self.metric,)

    def describe(self):
        return f"equivalence: reproduced if the interval of {self.metric} lies inside (-{self.margin:g}, " \
               f"{self.margin:g}); not reproduced if it lies wholly beyond the margin; inconclusive otherwise"

    def decide(self, evidence):
        m = evidence[self.metric]
        lo, hi = _interval(m)
        if -self.margin < lo and hi < self.margin:
            return REPRODUCED, f"{m.text()} lies inside the margin +-{self.margin:g}"
        if lo >= self.margin or hi <= -self.margin:
            return NOT_REPRODUCED, f"{m.text()} lies beyond the margin +-{self.margin:g}"
        return INCONCLUSIVE, f"{m.text()} overlaps the margin +-{self.margin:g}: neither equivalent nor different"


@dataclass(frozen=True)
class Exceeds(Rule):
    """Compare with a baseline recorded in the same run, never with a constant alone: reproduced when the whole
    interval of `metric` lies beyond the baseline's (above for side "above", below for "below"); not reproduced when
    it lies wholly on the other side of the baseline's value; inconclusive when they overlap. Where the two share
    evaluation items, prefer a paired difference metric with `Above`/`Below` (tighter, and honest about pairing)."""

    metric: str
    baseline: str
    side: str = "above"

    def __post_init__(self):
        if self.side not in ("above", "below"):
            raise ValueError(f"side must be 'above' or 'below', got {self.side!r}")

    def metrics(self):
        return (self.metric, self.baseline)

    def describe(self):
        return f"reproduced if the interval of {self.metric} lies wholly {self.side} that of the recorded baseline " \
               f"{self.baseline}; not reproduced if it lies wholly on the other side of the baseline's value; " \
               f"inconclusive otherwise"

    def decide(self, evidence):
        m, b = evidence[self.metric], evidence[self.baseline]
        lo, hi = _interval(m)
        b_lo, b_hi = _interval(b)
        b_value = float(b.value)
        if self.side == "above":
            win, lose = lo > b_hi, hi <= b_value
        else:
            win, lose = hi < b_lo, lo >= b_value
        if win:
            return REPRODUCED, f"{m.text()} lies {self.side} the baseline {b.text()}"
        if lose:
            return NOT_REPRODUCED, f"{m.text()} does not reach the baseline {b.text()}"
        return INCONCLUSIVE, f"{m.text()} overlaps the baseline {b.text()}"


@dataclass(frozen=True)
class Powered(Rule):
    """The power guard: `rule` is judged only when every guard is reproduced (the model learned at all, the
    experiment's minimal detectable effect is below the paper's, the arms left chance ...); otherwise the claim is
    inconclusive, with `why` and the failing guard's reason. Guards read recorded evidence (baselines, gains, spans),
    never constants alone."""

    rule: Rule
    guards: Sequence[Rule]
    why: str

    def metrics(self):
        return tuple(dict.fromkeys([m for g in self.guards for m in g.metrics()] + list(self.rule.metrics())))

    def describe(self):
        guards = "; ".join(f"({g.describe()})" for g in self.guards)
        return f"judged only if {self.why}: {guards}; then {self.rule.describe()}"

    def decide(self, evidence):
        for g in self.guards:
            result = g.apply(evidence)
            if result.verdict != REPRODUCED:
                return INCONCLUSIVE, f"no power: {self.why} does not hold ({result.reason})"
        inner = self.rule.apply(evidence)
        return inner.verdict, inner.reason


@dataclass(frozen=True)
class Capped(Rule):
    """A claim whose experiment cannot yet decide it (it needs a redesign, named in `why`): the rule is applied and
    its reading reported, but the verdict is "inconclusive", never "reproduced" or "not reproduced"."""

    rule: Rule
    why: str

    def metrics(self):
        return self.rule.metrics()

    def describe(self):
        return f"inconclusive until {self.why}; reported reading: {self.rule.describe()}"

    def decide(self, evidence):
        inner = self.rule.apply(evidence)
        return INCONCLUSIVE, f"capped until {self.why}; the rule alone reads {inner.verdict}: {inner.reason}"
