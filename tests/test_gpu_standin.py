"""The gpu tier end to end, offline, on stand-ins: each paper's own `notebooks/params/<paper>/gpu.yaml` with its counts
shrunk by `caplab.shrink` (nothing else changed: the same hub ids, revisions, datasets, configs, splits, prompt
templates and design), run through the runner against the stand-in hub (tests/standin_hub.py: tiny random models
of the real architecture classes with subword BPE tokenizers, small datasets in the real column layouts). The run
must finish and reach the verdict machinery: every claim gets its verdict from its rule (any verdict: the
stand-ins are random models; "not run: not measured" where random models give a rule nothing to read, e.g.
rl_scaling's fits when no stand-in ever solves a problem), none "not run" because a cell failed, and at least one
claim is judged from evidence.

Defects these runs found and that are fixed: kappa's subword prompt boundary, hub families without a local path
(ceilings, capacity_gap), rl_scaling's two-size path, two stand-in students of one size (capacity_gap), densing's
benchmark missing from the preflight, a hub row without a revision, an exact fit's information criteria.
"""
import json

import pytest

from caplab import runner, tiers
from caplab.report.registry import claims_for_notebook
from caplab.report.rules import NOT_RUN
from conftest import REPO

NOTEBOOKS = REPO / "notebooks"
PAPERS = ["shannon", "rl_scaling", "budget", "kappa", "capacity_gap", "densing", "ceilings"]

pytestmark = pytest.mark.notebook


def test_shrinking_keeps_ids_and_design_and_validates():
    """The shrunk gpu.yaml is still a valid parameter set that names the same models and data."""
    from caplab import preflight
    for paper in PAPERS:
        full, small = (tiers.plan(NOTEBOOKS, paper, "gpu", shrink=s) for s in (False, True))
        assert small.shrunk and not full.shrunk
        small_needs, full_needs = list(preflight.needs(small.params)), list(preflight.needs(full.params))
        assert set(small_needs) <= set(full_needs)                     # real ids and revisions, a subset at most
        assert {(n.kind, n.id) for n in small_needs} == {(n.kind, n.id) for n in full_needs}   # every model kept
    budget = tiers.plan(NOTEBOOKS, "budget", "gpu", shrink=True).params
    assert budget["budgets"] == [2, 60] and budget["ratio_budgets"] == [2] and budget["shares"] == [0.0, 0.1, 0.5, 1.0]
    assert tiers.plan(NOTEBOOKS, "rl_scaling", "gpu", shrink=True).params["grpo"]["lr"] == 1e-6
    family = tiers.plan(NOTEBOOKS, "shannon", "gpu", shrink=True).params["family"]
    assert family["revisions"] == ["step2000", "step16000", "step86000", "step143000"]


@pytest.mark.parametrize("paper", PAPERS)
def test_gpu_tier_runs_end_to_end_on_standins(paper, standin_env, tmp_path):
    plan = tiers.plan(NOTEBOOKS, paper, "gpu", shrink=True)
    standin_env.provide_for(plan.params)
    [outcome] = runner.run([paper], "gpu", notebooks_dir=NOTEBOOKS, results=tmp_path, shrink=True)
    assert outcome.status == "ok", f"{outcome.error}\n{outcome.traceback}"
    claims = {c["claim"]: c for c in json.loads((outcome.output_dir / "claims.json").read_text())["claims"]}
    assert set(claims) == {c.id for c in claims_for_notebook(paper)}
    assert not any(c["reason"].startswith("the notebook failed") for c in claims.values())
    assert any(c["verdict"] != NOT_RUN for c in claims.values()), claims
    prov = json.loads((outcome.output_dir / "provenance.json").read_text())
    assert prov["run"]["shrunk"] is True and prov["tier"] == "gpu"
    assert json.loads((outcome.output_dir / "metrics.json").read_text())["metrics"]


def test_a_shrunk_run_never_writes_the_default_results(monkeypatch, tmp_path):
    """A shrunk run is a pipeline check: refused, before anything runs, where the real results live."""
    monkeypatch.setenv("CAPLAB_RESULTS", str(tmp_path))
    with pytest.raises(tiers.ParameterError, match="another results folder"):
        runner.run(["budget"], "gpu", notebooks_dir=NOTEBOOKS, results=tmp_path, shrink=True)
    assert not any(tmp_path.iterdir())
