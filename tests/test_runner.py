"""The runner end to end on fixture notebooks: reports, claims, provenance, index, failures, bad parameters."""
import json
import shutil

import pytest

from caplab import tiers
from caplab.cli import main
import demo_paper  # noqa: F401  (registers the fixture papers in this process too)
from conftest import FIXTURES
from report_checks import assert_run_readable, broken_links, history_entries, stderr_outputs

pytestmark = pytest.mark.notebook


def run_cli(tmp_path, *args, notebooks=FIXTURES):
    return main(["--notebooks", str(notebooks), "--results", str(tmp_path / "results"), *args])


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """One run of two notebooks at the smoke tier: `demo` succeeds, `failing` raises in its third cell."""
    tmp = tmp_path_factory.mktemp("run")
    rc = run_cli(tmp, "run", "failing", "demo", "--tier", "smoke")
    return rc, tmp / "results"


def test_successful_notebook_produces_report_claims_provenance(mixed_run):
    _, results = mixed_run
    out = results / "demo" / "smoke"
    html = (out / "report.html").read_text()
    assert html.count("Verdicts") >= 1
    assert '<span class="tier smoke">smoke tier</span>' in html and "staging" not in html   # rendered while staged
    claims = {c["claim"]: c for c in json.loads((out / "claims.json").read_text())["claims"]}
    assert claims["demo.shift_positive"]["verdict"] == "reproduced"      # smoke: n=50, shift 0.5, seed 1
    assert claims["demo.check_holds"]["verdict"] == "reproduced"
    assert claims["demo.gpu_only"]["verdict"] == "not run"
    assert claims["demo.unmeasured"]["verdict"] == "not run"
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["params"]["n"] == 50 and prov["seeds"] == {"seed": 1} and prov["tier"] == "smoke"
    assert prov["run"]["status"] == "ok" and prov["run"]["wall_s"] > 0
    assert prov["packages"]["torch"].startswith("2.13.0") and "sha" in prov["git"]
    assert (out / "figures" / "hist.png").stat().st_size > 0 and (out / "figures" / "hist.svg").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert {m["name"] for m in metrics["metrics"]} == {"mean_shift", "check"}


def test_library_chatter_goes_to_run_log_not_to_the_report(mixed_run):
    """The demo notebook warns, logs, writes to stderr and draws a tqdm bar: all of it in run.log, none in a cell."""
    _, results = mixed_run
    out = results / "demo" / "smoke"
    assert stderr_outputs(out / "demo.ipynb") == []
    log = (out / "run.log").read_text()
    for chatter in ("demo warning from a dependency", "demo library log line", "demo stderr line", "demo progress"):
        assert chatter in log, chatter
    outputs = json.dumps([c.get("outputs") for c in json.loads((out / "demo.ipynb").read_text())["cells"]])
    assert "demo stderr line" not in outputs and "demo library log line" not in outputs and "it/s" not in outputs
    assert_run_readable(results, out, "demo", "smoke")


def test_failing_notebook_keeps_partial_output_and_others_still_run(mixed_run):
    rc, results = mixed_run
    assert rc == 1
    out = results / "failing" / "smoke"
    html = (out / "report.html").read_text()
    assert "before the failure" in html and "planted failure" in html and "never reached" not in html
    run = json.loads((out / "provenance.json").read_text())["run"]
    assert run["status"] == "failed" and run["failed_cell"] is not None and "planted failure" in run["error"]
    claims = json.loads((out / "claims.json").read_text())["claims"]
    assert [c["verdict"] for c in claims] == ["not run"] and "failed" in claims[0]["reason"]
    assert json.loads((results / "demo" / "smoke" / "provenance.json").read_text())["run"]["status"] == "ok"
    [entry] = history_entries(results, "failing", "smoke")
    assert entry["status"] == "failed" and entry["verdicts"] == {"failing.anything": "not run"}
    assert 'class="claims"' in html and "the run failed" in html


def test_index_lists_verdicts_and_failures(mixed_run):
    _, results = mixed_run
    index = (results / "index.html").read_text()
    card = (results / "scorecard.md").read_text()
    assert "demo.shift_positive" in index and "demo/smoke/report.html" in index
    assert "| demo | smoke | ok | `demo.shift_positive` | **reproduced** |" in card
    assert "| failing | smoke | failed | `failing.anything` | **not run** |" in card
    assert "`kappa.selector_agrees`" in card           # registered papers appear even when not run here
    assert broken_links(results / "index.html") == []
    assert "demo/smoke/run.log" in index and "demo/smoke/demo.ipynb" in index and "figures/hist.png" in index


def test_index_says_which_verdicts_moved_since_the_previous_run(mixed_run):
    """A second run of the same paper and tier: the history grows and the index names what moved, old -> new."""
    from caplab.report import history, index
    _, results = mixed_run
    [first] = history_entries(results, "demo", "smoke")
    earlier = dict(first, time="2000-01-01T00:00:00+00:00",
                   verdicts=dict(first["verdicts"], **{"demo.check_holds": "inconclusive"}))
    lines = (results / "history.jsonl").read_text()
    try:
        (results / "history.jsonl").write_text(json.dumps(earlier) + "\n" + lines)
        index.build(results)
        html = (results / "index.html").read_text()
        assert "Since the previous run" in html and "demo.check_holds" in html
        moved = html[html.find("Since the previous run"):html.find('<table class="runs">')]
        assert "inconclusive" in moved and "reproduced" in moved and "shift_positive" not in moved
        assert "demo.check_holds` inconclusive -> reproduced" in (results / "scorecard.md").read_text()
        assert history.change(history.read(results), "demo", "smoke").moved == [
            ("demo.check_holds", "inconclusive", "reproduced")]
    finally:
        (results / "history.jsonl").write_text(lines)
        index.build(results)


@pytest.mark.parametrize("content, message", [
    ("n: 50\nbogus_key: 1\n", "unknown parameter 'bogus_key'"),
    ("n: fifty\n", "parameter 'n' in"),
    ("shift: true\n", "parameter 'shift' in"),
    ("tier: gpu\n", "runner sets itself"),
])
def test_bad_parameters_rejected_before_execution(tmp_path, capsys, content, message):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(FIXTURES, notebooks)
    (notebooks / "params" / "demo" / "smoke.yaml").write_text(content)
    rc = run_cli(tmp_path, "run", "failing", "demo", "--tier", "smoke", notebooks=notebooks)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "demo" in err
    if "unknown" in message:
        assert "allowed: label, n, seed, shift" in err
    assert not (tmp_path / "results").exists()           # nothing ran, not even the valid notebook listed first


def test_missing_tier_file_rejected(tmp_path):
    with pytest.raises(tiers.ParameterError, match="no parameter file for this tier"):
        tiers.plan(FIXTURES, "demo", "gpu")
    with pytest.raises(tiers.ParameterError, match="available: demo, failing"):
        tiers.plan(FIXTURES, "nosuch", "smoke")
