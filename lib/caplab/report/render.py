"""The report a person reads: an executed notebook rendered to HTML by the project's nbconvert template.

The page opens with the answer (the papers, the tier and what it is an analogue of, the claims table, the headline
figures), read from the run's own files beside the notebook (claims.json, metrics.json, figures/); then the
notebook, its code and parameter cells folded (one click opens them), long printed output folded too. The executed
`.ipynb` stays beside the report for anyone who wants everything.
"""
from __future__ import annotations

import logging
from pathlib import Path

from caplab.report.summary import read_run
from caplab.substrate.cache import atomic_write_text

TEMPLATES = Path(__file__).with_name("templates") / "nbconvert"
TEMPLATE = "caplab_report"


def render(executed: Path, html: Path, *, notebook: str | None = None, tier: str | None = None,
           failure: str | None = None) -> Path:
    """Render `executed` (a notebook run by the runner) to `html`; the run's files are read from its folder.
    `failure`: why the run failed, shown at the top (the runner knows before provenance.json says so)."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    nb = nbformat.read(executed, as_version=4)
    folder = executed.parent
    notebook = notebook or executed.stem
    tier = tier or folder.name
    run = read_run(folder, notebook, tier)
    quiet = logging.getLogger("caplab.report.render.nbconvert")
    quiet.setLevel(logging.ERROR)        # nbconvert's remarks (e.g. on figures without alt text) are not news
    exporter = HTMLExporter(template_name=TEMPLATE, extra_template_basedirs=[str(TEMPLATES)], log=quiet)
    exporter.register_preprocessor(CoalesceStreamsPreprocessor(), enabled=True)   # printed lines: one block
    links = {name: path.name for name, path in (run.files() if run else {}).items() if name != "report"}
    links["notebook"] = executed.name
    links["run.log"] = "run.log"        # written by the runner beside the notebook
    body, _ = exporter.from_notebook_node(nb, resources={"caplab": {
        "run": run, "notebook": notebook, "tier": tier, "links": links, "analogue": analogue(nb),
        "failure": failure or _recorded_failure(run),
        "index": "../../index.html"}})
    atomic_write_text(html, body)
    return html


def analogue(nb) -> str | None:
    """The notebook's own words on what its small tiers are an analogue of: the first paragraph of its opening
    markdown (before the first code cell) that says "analogue"."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            break
        if cell.cell_type == "markdown":
            for paragraph in cell.source.split("\n\n"):
                if "analogue" in paragraph.lower():
                    return paragraph.strip()
    return None


def _recorded_failure(run) -> str | None:
    """The error provenance.json records for a failed run (a report rendered again later)."""
    recorded = (run.provenance.get("run") or {}) if run else {}
    return recorded.get("error") if recorded.get("status") == "failed" else None
