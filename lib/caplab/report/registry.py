"""The claim registry: every paper caplab replicates, every claim of each, and the rule that decides it.

The papers and their claims (statement, the paper's value and where it is stated, the tiers that can test it) are
data, in `papers.yaml`, taken from the fact sheets. The rules are code, one module per paper in `claim_rules`, keyed
by claim id: a claim whose experiment is not built yet carries `NotImplementedYet` and is always "not run". Every
built-in claim's verdict then passes the gate of its rule's measured false-positive rate and power (`calibration`). Tests and plug-ins may `register`
further papers.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from caplab.report import calibration, claim_rules
from caplab.report.rules import NOT_RUN, Capped, NotImplementedYet, Rule, Verdict

TIERS = ("smoke", "cpu", "gpu")


def _all_rules() -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    for paper in claim_rules.PAPERS:
        rules.update(importlib.import_module(f"caplab.report.claim_rules.{paper}").RULES)
    return rules


RULES = _all_rules()         # claim id -> rule (or a function of the claim's papers.yaml entry giving one)


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    paper_value: str
    tiers: tuple[str, ...] = TIERS
    rule: Rule = field(default_factory=NotImplementedYet)
    # Built-in claims are gated by their rule's measured operating characteristics (`calibration`); a claim
    # registered by a test fixture or plug-in is judged by its rule alone unless it asks for the gate.
    controlled: bool = False
    margin: float | None = None         # the equivalence margin of a "no effect" claim (papers.yaml)
    margin_source: str = ""

    @property
    def paper(self) -> str:
        return self.id.split(".", 1)[0]

    def judge(self, evidence, tier: str) -> Verdict:
        """The verdict of this claim on a run's evidence at `tier`."""
        if tier not in self.tiers:
            return Verdict(NOT_RUN, f"tested at the {'/'.join(self.tiers)} tier only")
        verdict = self.rule.apply(evidence)
        return calibration.gate(self, verdict) if self.controlled else verdict

    def operating(self) -> dict:
        """The rule's measured false-positive rate and power (None where no control measured this rule), and why
        the rule is not calibrated, if it is not."""
        if isinstance(self.rule, NotImplementedYet):
            return {"false_positive_rate": None, "power": None, "calibration": "no experiment"}
        oc, problem = calibration.status(self)
        fresh = oc is not None and oc.rule == calibration.measured_text(self.rule)
        return {"false_positive_rate": oc.false_positive_rate if fresh else None,
                "power": oc.power if fresh else None,
                "null_draws": oc.null_draws if fresh else None, "planted_draws": oc.planted_draws if fresh else None,
                "null_world": oc.null_world if fresh else None, "planted_effect": oc.planted_effect if fresh else None,
                "calibration": problem or ("calibrated" if not isinstance(self.rule, Capped) else
                                           f"capped (never judged: {self.rule.why}); rates of the rule under the cap")}

    def as_dict(self) -> dict:
        return {"id": self.id, "statement": self.statement, "paper_value": self.paper_value,
                "tiers": list(self.tiers), "rule": self.rule.describe(), "margin": self.margin,
                "margin_source": self.margin_source, **self.operating()}


@dataclass(frozen=True)
class Paper:
    id: str
    title: str
    arxiv: str
    notebook: str            # the notebook (stem) that tests this paper's claims
    claims: tuple[Claim, ...]


_EXTRA: dict[str, Paper] = {}


@lru_cache(maxsize=1)
def _builtin() -> dict[str, Paper]:
    data = yaml.safe_load((Path(__file__).with_name("papers.yaml")).read_text())
    papers = {}
    for p in data["papers"]:
        claims = tuple(Claim(c["id"], c["statement"], c["paper_value"], tuple(c["tiers"]), _rule(c),
                             controlled=True, margin=c.get("margin"), margin_source=c.get("margin_source", ""))
                       for c in p["claims"])
        papers[p["id"]] = Paper(p["id"], p["title"], str(p["arxiv"]), p["notebook"], claims)
    unknown = set(RULES) - {c.id for p in papers.values() for c in p.claims}
    if unknown:
        raise RuntimeError(f"rules for claims that are not in papers.yaml: {sorted(unknown)}")
    return papers


def _rule(entry: dict) -> Rule:
    """The claim's rule; a rule given as a function receives the claim's papers.yaml entry (its margin)."""
    rule = RULES.get(entry["id"], NotImplementedYet())
    if callable(rule) and not isinstance(rule, Rule):
        if entry.get("margin") is None:
            raise RuntimeError(f"{entry['id']}: its rule needs a margin, and papers.yaml states none")
        rule = rule(entry)
    return rule


def register(paper: Paper) -> None:
    """Add a paper (used by test fixtures and extensions)."""
    _EXTRA[paper.id] = paper


def papers() -> dict[str, Paper]:
    return {**_builtin(), **_EXTRA}


def claims_for_notebook(notebook: str) -> list[Claim]:
    """All claims tested by one notebook (a notebook may serve several papers: ceilings also tests downstream)."""
    return [c for p in papers().values() if p.notebook == notebook for c in p.claims]


def claim(claim_id: str) -> Claim:
    for p in papers().values():
        for c in p.claims:
            if c.id == claim_id:
                return c
    raise KeyError(f"unknown claim {claim_id!r}")
