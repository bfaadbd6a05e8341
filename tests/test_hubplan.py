"""`python -m caplab plan` and `fetch`, offline: what a tier names, what the cache holds, and the download calls
(mocked: the tests never reach the hub)."""
import sys

import pytest

from caplab import hubplan, preflight, tiers
from caplab.cli import main
from conftest import REPO

NOTEBOOKS = REPO / "notebooks"


def test_plan_lists_every_model_and_dataset_with_its_cached_size(tmp_path, monkeypatch, capsys):
    from standin_hub import StandinHub
    standin_env = StandinHub(tmp_path / "hub")          # its own, empty: the session's hub may hold budget's already
    for key, value in standin_env.env().items():
        monkeypatch.setenv(key, value)
    plan = tiers.plan(NOTEBOOKS, "budget", "gpu")
    rows = hubplan.resources(plan.params)
    assert [(r.kind, r.id) for r in rows] == [("model", "Qwen/Qwen2.5-1.5B"), ("dataset", "openai/gsm8k"),
                                               ("dataset", "mohit-raghavendra/gsm8k-gpt4opreferences")]
    assert all(r.cached_bytes is None for r in rows)
    standin_env.provide_for(plan.params)
    assert all(r.cached_bytes and r.cached_bytes > 1000 for r in hubplan.resources(plan.params))
    assert main(["--notebooks", str(NOTEBOOKS), "plan", "budget"]) == 0
    out = capsys.readouterr().out
    assert "Qwen/Qwen2.5-1.5B" in out and "cached" in out and "rough GPU hours" in out and "0 not cached" in out


def test_gpu_hour_estimates_grow_with_the_counts():
    full = tiers.plan(NOTEBOOKS, "shannon", "gpu")
    small = tiers.plan(NOTEBOOKS, "shannon", "gpu", shrink=True)
    (h_full, terms), (h_small, _) = (hubplan.gpu_hours("shannon", p.params) for p in (full, small))
    assert h_full > 100 * h_small > 0 and terms
    for paper in ("rl_scaling", "budget", "kappa", "capacity_gap", "densing"):
        full, small = (hubplan.gpu_hours(paper, tiers.plan(NOTEBOOKS, paper, "gpu", shrink=s).params)[0]
                       for s in (False, True))
        assert full > small > 0, paper
    assert hubplan.gpu_hours("ceilings", tiers.plan(NOTEBOOKS, "ceilings", "gpu").params) == (None, [])


def test_fetch_downloads_each_revision_and_prepares_each_dataset(monkeypatch, capsys):
    calls = []
    import datasets
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **kw: calls.append(("model", kw)))
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **kw: calls.append(("dataset", a, kw)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert main(["--notebooks", str(NOTEBOOKS), "fetch", "rl_scaling"]) == 0
    models = [kw for kind, kw in ((c[0], c[1]) for c in calls) if kind == "model"]
    assert [(m["repo_id"], m["revision"]) for m in models] == [("Qwen/Qwen2.5-0.5B", "main"),
                                                                ("Qwen/Qwen2.5-1.5B", "main")]
    assert "*.safetensors" in models[0]["allow_patterns"]
    assert [c[1] for c in calls if c[0] == "dataset"] == [("openai/gsm8k", "main")]
    import os
    assert os.environ["HF_HUB_OFFLINE"] == "0"          # downloads allowed for this command
    assert "done" in capsys.readouterr().out


def test_every_gpu_tier_names_its_benchmark_datasets():
    """densing's benchmark (kind "hf") is a dataset the preflight looks for, like every task's."""
    needs = preflight.needs(tiers.plan(NOTEBOOKS, "densing", "gpu").params)
    assert ("dataset", "openbmb/DensingLaw-ScalingBench") in [(n.kind, n.id) for n in needs]
