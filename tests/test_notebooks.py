"""Notebook hygiene, and every paper notebook's tier files fit its parameters cell."""
import fcntl
import json
import math
import os
import warnings

import pytest

from caplab import tiers
from caplab.report.registry import TIERS, papers
from conftest import FIXTURES, REPO
from report_checks import assert_run_readable

NOTEBOOKS = REPO / "notebooks"
PAPER_NOTEBOOKS = sorted(NOTEBOOKS.glob("*.ipynb"))
ALL = PAPER_NOTEBOOKS + sorted(FIXTURES.glob("*.ipynb"))


def test_there_are_paper_notebooks():
    assert PAPER_NOTEBOOKS, "notebooks/ holds no paper notebook"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_stored_clean(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "outputs are stored"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{len(tagged)} cells tagged 'parameters'"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", PAPER_NOTEBOOKS, ids=lambda p: p.stem)
def test_every_tier_validates_and_cpu_is_the_default(path):
    plans = {tier: tiers.plan(NOTEBOOKS, path.stem, tier) for tier in TIERS}
    declared = tiers.notebook_parameters(path)
    defaults = {k: v["default"] for k, v in declared.items() if k not in tiers.RESERVED}
    # `make lab` runs the notebook with its defaults: they must be the cpu tier's values
    import ast
    cpu = {k: v for k, v in plans["cpu"].params.items() if k != "tier"}
    assert set(cpu) == set(defaults), "cpu.yaml must set every parameter"
    for key, value in cpu.items():
        assert ast.literal_eval(defaults[key]) == value, f"default of {key!r} differs from cpu.yaml"
    assert ast.literal_eval(declared["tier"]["default"]) == "cpu"


@pytest.mark.parametrize("path", PAPER_NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_belongs_to_a_registered_paper(path):
    assert path.stem in {p.notebook for p in papers().values()}


@pytest.mark.notebook
@pytest.mark.parametrize("path", PAPER_NOTEBOOKS, ids=lambda p: p.stem)
def test_paper_notebook_runs_at_smoke_and_records_every_claim(path, tmp_path):
    """The smoke tier executes every cell and gives each claim a verdict from evidence (gpu-only claims: not run);
    the run reads as a report: no stderr in the notebook, the claims table on top, a history entry, valid links."""
    from caplab import runner
    from caplab.report.registry import claims_for_notebook
    [outcome] = runner.run([path.stem], "smoke", notebooks_dir=NOTEBOOKS, results=tmp_path)
    assert outcome.status == "ok", outcome.error
    doc = json.loads((outcome.output_dir / "claims.json").read_text())
    by_id = {c["claim"]: c for c in doc["claims"]}
    assert set(by_id) == {c.id for c in claims_for_notebook(path.stem)}
    for claim in claims_for_notebook(path.stem):
        if "smoke" in claim.tiers:
            assert not by_id[claim.id]["reason"].startswith("not measured"), by_id[claim.id]
    assert (outcome.output_dir / "report.html").exists() and (tmp_path / "index.html").exists()
    assert_run_readable(tmp_path, outcome.output_dir, path.stem, "smoke")
    check_smoke_metrics(path.stem, outcome.output_dir)


SMOKE_METRICS = FIXTURES.parent / "smoke_metrics.json"


def _same(a, b) -> bool:
    if a is None or b is None or isinstance(a, (bool, str)) or isinstance(b, (bool, str)):
        return a == b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def check_smoke_metrics(paper: str, out):
    """The smoke metrics equal those recorded in tests/fixtures/smoke_metrics.json (same CPU, torch and thread count
    only: other kernels round differently). A change meant to move them regenerates the file with
    CAPLAB_UPDATE_SMOKE_METRICS=1."""
    metrics = {m["name"]: [m["value"], m["lo"], m["hi"]]
               for m in json.loads((out / "metrics.json").read_text())["metrics"]}
    prov = json.loads((out / "provenance.json").read_text())
    recorded = json.loads(SMOKE_METRICS.read_text())
    if os.environ.get("CAPLAB_UPDATE_SMOKE_METRICS") == "1":
        with open(SMOKE_METRICS.with_suffix(".lock"), "w") as lock:      # pytest-xdist workers update it too
            fcntl.flock(lock, fcntl.LOCK_EX)
            recorded = json.loads(SMOKE_METRICS.read_text())
            recorded["papers"][paper] = metrics
            recorded.update(cpu=prov["cpu"], torch=prov["packages"]["torch"], threads=prov.get("threads"))
            SMOKE_METRICS.write_text(json.dumps(recorded, indent=1, sort_keys=True))
        return
    here = (prov["cpu"], prov["packages"]["torch"], prov.get("threads"))
    if here != (recorded["cpu"], recorded["torch"], recorded.get("threads")):
        warnings.warn(f"{paper}: smoke metrics not compared: recorded on {recorded['cpu']} with torch "
                      f"{recorded['torch']} at {recorded.get('threads')} threads, this run is on {here[0]} with torch "
                      f"{here[1]} at {here[2]} threads")
        return
    if paper not in recorded["papers"]:
        warnings.warn(f"{paper}: no smoke metrics recorded yet; record them with CAPLAB_UPDATE_SMOKE_METRICS=1")
        return
    expected = recorded["papers"][paper]
    assert set(metrics) == set(expected), "the smoke tier records other metrics than before"
    moved = {name: (metrics[name], expected[name]) for name in expected
             if not all(_same(a, b) for a, b in zip(metrics[name], expected[name]))}
    assert not moved, f"smoke metrics moved (new, recorded): {moved}"
