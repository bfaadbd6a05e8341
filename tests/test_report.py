"""The notebook-side Report: evidence in, verdicts and provenance out, without a runner."""
import json

import matplotlib.pyplot as plt
import pytest

import demo_paper  # noqa: F401  (registers the fixture papers)
from caplab.report import Report


def test_finish_writes_verdicts_metrics_and_provenance(tmp_path):
    report = Report("demo", tier="cpu", params={"seed": 3, "n": 10}, output_dir=tmp_path)
    report.record("mean_shift", -0.5, lo=-0.9, hi=-0.1)
    report.record("check", False)
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    report.figure(fig, "line", show=False)
    report.finish()
    claims = {c["claim"]: c for c in json.loads((tmp_path / "claims.json").read_text())["claims"]}
    assert claims["demo.shift_positive"]["verdict"] == "not reproduced"
    assert claims["demo.check_holds"]["verdict"] == "not reproduced"
    assert claims["demo.gpu_only"]["verdict"] == "not run"
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["seeds"] == {"seed": 3} and prov["wall_s"] >= 0 and prov["tier"] == "cpu"
    assert (tmp_path / "figures" / "line.svg").exists()
    assert json.loads((tmp_path / "metrics.json").read_text())["figures"] == ["line"]


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="unknown tier"):
        Report("demo", tier="laptop")
    with pytest.raises(ValueError, match="no claims registered"):
        Report("nosuchpaper", tier="cpu")
    report = Report("demo", tier="smoke", output_dir="/tmp/unused")
    with pytest.raises(ValueError, match="reversed"):
        report.record("x", 1.0, lo=2.0, hi=0.0)
    with pytest.raises(ValueError, match="both ends"):
        report.record("x", 1.0, lo=0.0)
    with pytest.raises(TypeError, match="'x': the value must be a number"):
        report.record("x", "0.5")


def test_an_infinite_metric_is_stored_and_judged():
    """JSON has no infinity: an infinite value is kept as "inf"; its text and the rules still read it (a shrunk gpu
    run once crashed formatting one)."""
    from caplab.report.rules import Above
    report = Report("demo", tier="cpu", params={}, output_dir=None)
    metric = report.record("ratio", float("inf"), lo=1.0, hi=float("inf"))
    assert (metric.value, metric.hi) == ("inf", "inf") and metric.text() == "ratio = inf [1, inf]"
    assert Above("ratio", 0.5).apply({"ratio": metric}).verdict == "reproduced"


def test_record_all_takes_every_evidence_form(tmp_path):
    """A library's evidence dict recorded in one call: tuples, dicts with notes, bare values; an interval that
    could not be formed is dropped, not recorded as NaN (or refused as reversed)."""
    report = Report("demo", tier="cpu", params={}, output_dir=tmp_path)
    report.record_all({"a": (0.5, 0.1, 0.9), "b": {"value": 2.0, "lo": 1.0, "hi": 3.0, "note": "own"},
                       "c": (0.3, float("nan"), float("nan")), "d": True, "e": {"value": None}},
                      figure="fig", notes={"a": "from notes", "b": "ignored"}, note="default")
    m = report.metrics
    assert (m["a"].value, m["a"].lo, m["a"].hi, m["a"].note, m["a"].figure) == (0.5, 0.1, 0.9, "from notes", "fig")
    assert (m["b"].lo, m["b"].hi, m["b"].note) == (1.0, 3.0, "own")
    assert (m["c"].value, m["c"].lo, m["c"].hi, m["c"].note) == (0.3, None, None, "default")
    assert m["d"].value is True and m["e"].value is None
