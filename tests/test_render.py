"""The report template: the answer on top (paper, tier, claims table, headline figures), code and parameters folded."""
import json

import matplotlib.pyplot as plt
import nbformat

import demo_paper  # noqa: F401  (registers the fixture papers)
from caplab.report.render import render
from report_checks import assert_report_opens_with_the_answer, broken_links


def run_folder(tmp_path):
    out = tmp_path / "demo" / "smoke"
    (out / "figures").mkdir(parents=True)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    for ext in ("png", "svg"):
        fig.savefig(out / "figures" / f"hist.{ext}")
    fig.savefig(out / "figures" / "other.png")
    plt.close(fig)
    evidence = [{"name": "mean_shift", "value": 0.4, "lo": 0.2, "hi": 0.6, "figure": "hist"}]
    claims = {"notebook": "demo", "tier": "smoke", "scale": "smoke test of the machinery, not evidence", "claims": [
        {"claim": "demo.shift_positive", "verdict": "reproduced", "reason": "lies above 0", "evidence": evidence,
         "rule": "reproduced if mean_shift > 0", "statement": "the sample mean lies above zero",
         "paper_value": "> 0", "false_positive_rate": 0.05},
        {"claim": "demo.check_holds", "verdict": "inconclusive", "reason": "unclear", "evidence": [],
         "rule": "reproduced if check is true", "statement": "an exact check holds", "paper_value": "true"}]}
    (out / "claims.json").write_text(json.dumps(claims))
    (out / "metrics.json").write_text(json.dumps({"metrics": [], "figures": ["other", "hist"]}))
    (out / "provenance.json").write_text(json.dumps({"git": {"sha": "0123456789abcdef", "dirty": False},
                                                     "started": "2026-01-01T00:00:00+00:00", "wall_s": 3.5}))
    (out / "run.log").write_text("log\n")
    (tmp_path / "index.html").write_text("")
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell
    nb.cells = [nbformat.v4.new_markdown_cell("# Demo\n\nAt the `cpu` tier this is a **small-scale analogue**: "
                                              "draws from a normal distribution."),
                code("n = 200", metadata={"tags": ["parameters"]}),
                code("n = 50\ntier = 'smoke'", metadata={"tags": ["injected-parameters"]}),
                code("for i in range(10):\n    print('row', i)", outputs=[nbformat.v4.new_output(
                    "stream", name="stdout", text=f"row {i}\n") for i in range(10)]),     # one output per line
                code("print('short')", outputs=[nbformat.v4.new_output("stream", name="stdout", text="short\n")])]
    nbformat.write(nb, out / "demo.ipynb")
    return out, claims


def test_report_opens_with_claims_and_headline_figure_and_folds_code(tmp_path):
    out, claims = run_folder(tmp_path)
    html = render(out / "demo.ipynb", out / "report.html").read_text()
    assert_report_opens_with_the_answer(out / "report.html", claims)
    top = html[html.find('id="answer"'):html.find('class="jp-Cell ')]
    assert "A demo paper for tests" in top and "smoke tier" in top and "not evidence" in top
    assert "<strong>small-scale analogue</strong>: draws from a normal distribution" in top
    assert "5 %" in top and "—" in top                     # the false-positive rate, and its absence
    assert 'src="figures/hist.png"' in top and "figures/other.png" not in top    # the figure the evidence names
    assert "0123456789" in top and 'href="run.log"' in top and 'href="demo.ipynb"' in top
    assert "parameters of this run" in html and "default parameters" in html
    assert html.count('<details class="caplab-fold caplab-output">') == 1       # the 10 lines, not "short"
    assert broken_links(out / "report.html") == []


def test_headline_falls_back_to_the_first_figure_and_names_a_failure(tmp_path):
    out, claims = run_folder(tmp_path)
    for c in claims["claims"]:
        c["evidence"] = []
    (out / "claims.json").write_text(json.dumps(claims))
    html = render(out / "demo.ipynb", out / "report.html", failure="cell [3] raised ValueError: boom").read_text()
    top = html[html.find('id="answer"'):html.find('class="jp-Cell ')]
    assert 'src="figures/other.png"' in top and "the run failed: cell [3] raised ValueError: boom" in top
