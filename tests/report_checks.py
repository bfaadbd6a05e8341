"""Structural checks of what a run leaves for a reader, shared by the runner tests and the smoke runs of the paper
notebooks: no stderr in the executed notebook, the claims table at the top of the report, the history entry, the
index's links."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse


def stderr_outputs(executed: Path) -> list[str]:
    """The text of every stderr stream output in an executed notebook (what a reader should never see)."""
    nb = json.loads(executed.read_text())
    return ["".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stderr"]


def assert_report_opens_with_the_answer(report: Path, claims_doc: dict) -> None:
    """The claims table, with every claim and its verdict, comes before the first notebook cell; code is folded."""
    html = report.read_text()
    answer = html.find('id="answer"')
    table = html.find('class="claims"')
    first_cell = html.find('class="jp-Cell ')
    assert 0 <= answer < table, "no claims table in the report's opening section"
    assert first_cell == -1 or table < first_cell, "the claims table comes after notebook cells"
    header = html[answer:first_cell if first_cell != -1 else None]
    for c in claims_doc["claims"]:
        row = header[header.find(f"<code>{c['claim']}</code>"):]
        assert row and c["claim"] in header, f"claim {c['claim']} missing from the report's header"
        verdict = re.search(r'class="verdict ([a-z-]+)"', row)
        assert verdict and verdict.group(1) == c["verdict"].replace(" ", "-"), c["claim"]
    code_cells = html.count('class="jp-Cell jp-CodeCell')
    folded = html.count('<details class="caplab-fold caplab-code">')
    assert folded == code_cells, f"{folded} of {code_cells} code cells folded"


def history_entries(results: Path, notebook: str, tier: str) -> list[dict]:
    path = results / "history.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e["notebook"] == notebook and e["tier"] == tier]


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.targets.append(value)


def broken_links(page: Path) -> list[str]:
    """Relative links and images of an HTML page that point to no file."""
    parser = _Links()
    parser.feed(page.read_text())
    broken = []
    for target in parser.targets:
        url = urlparse(target)
        if url.scheme or url.netloc or target.startswith(("#", "data:")):
            continue
        if not (page.parent / unquote(url.path)).exists():
            broken.append(target)
    return broken


def assert_run_readable(results: Path, out: Path, notebook: str, tier: str) -> None:
    """Everything the structural checks ask of one finished run (the smoke runs of every notebook use this)."""
    executed = out / f"{notebook}.ipynb"
    assert stderr_outputs(executed) == [], "stderr in the executed notebook (belongs in run.log)"
    assert (out / "run.log").stat().st_size > 0
    claims_doc = json.loads((out / "claims.json").read_text())
    assert_report_opens_with_the_answer(out / "report.html", claims_doc)
    [entry] = history_entries(results, notebook, tier)[-1:]
    assert entry["verdicts"] == {c["claim"]: c["verdict"] for c in claims_doc["claims"]}
    assert entry["git"] == (json.loads((out / "provenance.json").read_text()).get("git") or {}).get("sha")
    for page in (results / "index.html", out / "report.html"):
        assert broken_links(page) == [], f"broken links in {page.name}"
    index = (results / "index.html").read_text()
    assert f"{notebook}/{tier}/report.html" in index and f"{notebook}/{tier}/run.log" in index
