"""Verdict rules and the claim registry: each of the four verdicts comes out of evidence through a rule."""
import pytest

from caplab.report import registry
from caplab.report.rules import (INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN, REPRODUCED, AllOf, Above, Below, Brackets, Holds,
                                 Metric, NotImplementedYet, Requires)


def ev(*metrics):
    return {m.name: m for m in metrics}


@pytest.mark.parametrize("lo, hi, expected", [
    (0.1, 0.5, REPRODUCED), (-0.5, -0.1, NOT_REPRODUCED), (-0.1, 0.3, INCONCLUSIVE), (-0.5, 0.0, NOT_REPRODUCED)])
def test_above_reads_the_interval(lo, hi, expected):
    m = Metric("d", (lo + hi) / 2, lo, hi)
    assert Above("d", 0.0).apply(ev(m)).verdict == expected


@pytest.mark.parametrize("lo, hi, expected", [
    (-0.9, -0.6, REPRODUCED), (-0.4, 0.2, NOT_REPRODUCED), (-0.7, -0.3, INCONCLUSIVE)])
def test_below_reads_the_interval(lo, hi, expected):
    assert Below("r", -0.5).apply(ev(Metric("r", (lo + hi) / 2, lo, hi))).verdict == expected


def test_point_values_without_interval():
    assert Above("d", 1.0).apply(ev(Metric("d", 2.0))).verdict == REPRODUCED
    assert Above("d", 1.0).apply(ev(Metric("d", 0.5))).verdict == NOT_REPRODUCED


def test_missing_metric_is_not_run_and_names_it():
    v = Below("forgetting", 0.0).apply(ev(Metric("other", 1.0)))
    assert v.verdict == NOT_RUN and "forgetting" in v.reason


def test_holds():
    assert Holds("same").apply(ev(Metric("same", True))).verdict == REPRODUCED
    assert Holds("same").apply(ev(Metric("same", False))).verdict == NOT_REPRODUCED


def test_all_of_combines():
    rule = AllOf((Below("a", 0.0), Below("b", 0.0)))
    assert rule.apply(ev(Metric("a", -1.0), Metric("b", -2.0))).verdict == REPRODUCED
    assert rule.apply(ev(Metric("a", -1.0), Metric("b", 2.0))).verdict == NOT_REPRODUCED
    assert rule.apply(ev(Metric("a", -1.0), Metric("b", 0.0, -1.0, 1.0))).verdict == INCONCLUSIVE
    assert rule.apply(ev(Metric("a", -1.0))).verdict == NOT_RUN


def test_not_implemented_is_never_a_guess():
    assert NotImplementedYet().apply(ev(Metric("x", 1.0))).verdict == NOT_RUN


def test_registry_covers_every_paper_and_claim_ids_are_prefixed():
    papers = registry.papers()
    assert {"ceilings", "downstream", "shannon", "kappa", "rl_scaling", "budget", "capacity_gap"} <= set(papers)
    for pid, paper in papers.items():
        assert paper.claims, pid
        for c in paper.claims:
            assert c.id.startswith(pid + "."), c.id
            assert set(c.tiers) <= set(registry.TIERS)
    assert {c.id for c in registry.claims_for_notebook("ceilings")} >= {"downstream.correlation_degrades"}


def test_gpu_only_claim_is_not_run_at_cpu():
    c = registry.claim("ceilings.no_gain_past_1b")
    assert c.tiers == ("gpu",)
    assert c.judge({}, "cpu").verdict == NOT_RUN and "gpu" in c.judge({}, "cpu").reason


def test_kappa_rules_read_the_metrics_the_notebook_records():
    c = registry.claim("kappa.less_forgetting")
    diffs = {"full": (-0.2, -0.3, -0.1), "lora": (-0.1, -0.2, -0.01), "random": (-0.05, -0.09, -0.01)}

    def evidence(pairs=6, **change):
        values = {**diffs, **change}
        return ev(*[Metric(f"forgetting_low_minus_{k}", *v) for k, v in values.items()],
                  *[Metric(f"pairs_low_minus_{k}", pairs) for k in values])
    assert c.rule.apply(evidence()).verdict == REPRODUCED
    assert c.rule.apply(evidence(pairs=5)).verdict == INCONCLUSIVE         # fewer than 6 seeds reached the target
    assert c.rule.apply(evidence(random=(0.0, -0.1, 0.1))).verdict == INCONCLUSIVE   # lowest not below random
    assert c.rule.apply(evidence(random=(0.2, 0.1, 0.3))).verdict == NOT_REPRODUCED
    high = registry.claim("kappa.low_beats_high")
    assert high.rule.apply(ev(Metric("forgetting_low_minus_high", -0.2, -0.3, -0.1),
                              Metric("pairs_low_minus_high", 6))).verdict == REPRODUCED
    assert high.rule.apply(ev(Metric("forgetting_low_minus_high", None),
                              Metric("pairs_low_minus_high", 0))).verdict == INCONCLUSIVE


def test_brackets_and_requires():
    rule = Brackets("k", 1.0, exclude=0.0)
    assert rule.apply(ev(Metric("k", 1.1, 0.6, 1.5))).verdict == REPRODUCED
    assert rule.apply(ev(Metric("k", 0.3, 0.1, 0.5))).verdict == NOT_REPRODUCED
    assert rule.apply(ev(Metric("k", 0.5, -0.5, 1.5))).verdict == INCONCLUSIVE
    gated = Requires("n", 3, rule)
    assert gated.apply(ev(Metric("n", 2), Metric("k", 1.1, 0.6, 1.5))).verdict == INCONCLUSIVE
    assert gated.apply(ev(Metric("n", 3), Metric("k", 1.1, 0.6, 1.5))).verdict == REPRODUCED
