"""The runner: execute paper notebooks at a tier with papermill, render them with nbconvert, rebuild the index.

Every plan is validated before the first notebook executes. A failing notebook keeps its partial output and HTML,
is marked failed with the failing cell, and the other notebooks still run; `run` returns the outcomes and the
caller exits non-zero if any failed.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from caplab import progress as terminal
from caplab import tiers
from caplab.report import history, index, provenance
from caplab.report.record import OUTPUT_ENV, write_json
from caplab.report.registry import claims_for_notebook
from caplab.report.rules import NOT_RUN
from caplab.substrate import runlog

log = logging.getLogger("caplab.runner")

KERNEL_NAME = "caplab"
# Per-cell timeouts in seconds, per tier: a smoke cell that runs for minutes is a bug, a gpu cell may take hours.
CELL_TIMEOUT = {"smoke": 600, "cpu": 3600, "gpu": 6 * 3600}
START_TIMEOUT = 120
# Defaults for the kernel's environment (a value already set wins): offline hub, text progress, no load bars.
KERNEL_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
              "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
              "TRANSFORMERS_VERBOSITY": "error", "TQDM_MININTERVAL": "5"}


@dataclass
class Outcome:
    notebook: str
    tier: str
    status: str                  # "ok" or "failed"
    output_dir: Path
    wall_s: float
    error: str | None = None
    failed_cell: int | None = None


def ensure_kernel() -> str:
    """Install (once) a kernelspec named `caplab` that runs this very Python, inside its own prefix."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
        if spec.argv and Path(spec.argv[0]).resolve() == Path(sys.executable).resolve():
            return KERNEL_NAME
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install
    install(kernel_name=KERNEL_NAME, display_name="caplab (.venv)", prefix=sys.prefix)
    return KERNEL_NAME


def render_html(executed: Path, html: Path, failure: str | None = None) -> None:
    """nbconvert the executed notebook to the HTML report (the project's template: the answer first, code folded);
    `failure` says why the run failed, at the top."""
    from caplab.report.render import render
    render(executed, html, failure=failure)


def execute_with_log(plan: tiers.Plan, executed: Path, out: Path, *, kernel: str, timeout: int,
                     progress: terminal.RunProgress | None = None) -> None:
    """papermill, with the kernel's library output (logging, warnings, progress bars, stderr) routed to
    `out/run.log` (see caplab.substrate.runlog), that file mirrored to the terminal as it grows, and a terminal line
    per long cell. The caller restores os.environ."""
    import papermill
    log_file = out / "run.log"
    os.environ[runlog.LOG_ENV] = str(log_file.resolve())
    with open(log_file, "a", encoding="utf-8") as fh:
        fh.write(f"caplab: {plan.notebook} at the {plan.tier} tier, parameters {plan.params_file}, "
                 f"started {provenance.now()}\n")
    with terminal.LogMirror(log_file, prefix=f"  {plan.notebook} | "):
        papermill.execute_notebook(
            str(plan.path), str(executed), parameters=plan.params, kernel_name=kernel, progress_bar=False,
            log_output=False, start_timeout=START_TIMEOUT, execution_timeout=timeout, cwd=str(plan.path.parent),
            engine_name=terminal.ENGINE, on_cell=progress.cell_done if progress else None)


def _mark_not_run(plan: tiers.Plan, out: Path, reason: str) -> None:
    """A run that failed before recording its verdicts: every claim is "not run", with the reason."""
    claims = [{**c.as_dict(), "claim": c.id, "verdict": NOT_RUN, "reason": reason, "evidence": []}
              for c in claims_for_notebook(plan.notebook)]
    write_json(out / "claims.json", {"notebook": plan.notebook, "tier": plan.tier, "claims": claims})


def execute(plan: tiers.Plan, results: Path, *, kernel: str, cell_timeout: int | None = None,
            progress: terminal.RunProgress | None = None) -> Outcome:
    from papermill.exceptions import PapermillExecutionError

    out = results / plan.notebook / plan.tier
    if out.exists():
        shutil.rmtree(out)                 # stale verdicts must never survive a new run
    out.mkdir(parents=True)
    executed, html = out / f"{plan.notebook}.ipynb", out / "report.html"
    started, t0 = provenance.now(), time.perf_counter()
    status, error, failed_cell = "ok", None, None
    env_before = dict(os.environ)
    os.environ[OUTPUT_ENV] = str(out.resolve())
    for key, value in KERNEL_ENV.items():
        os.environ.setdefault(key, value)
    log.info("[%s/%s] executing %s -> %s", plan.notebook, plan.tier, plan.path, out)
    try:
        execute_with_log(plan, executed, out, kernel=kernel, timeout=cell_timeout or CELL_TIMEOUT[plan.tier],
                         progress=progress)
    except PapermillExecutionError as exc:
        status, failed_cell = "failed", exc.exec_count
        error = f"cell [{exc.exec_count}] raised {exc.ename}: {exc.evalue}"
    except Exception as exc:  # kernel died, timeout, ...: still a failed paper, not a crashed suite
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    wall = time.perf_counter() - t0
    if status == "failed":
        log.error("[%s/%s] FAILED after %.1f s: %s", plan.notebook, plan.tier, wall, error)
        _mark_not_run(plan, out, f"the notebook failed: {error}")
    if executed.exists():
        try:
            render_html(executed, html, failure=error)
        except Exception as exc:  # a render failure must not hide the run's outcome
            status, error = "failed", error or f"rendering HTML failed: {exc}"
    run = {"status": status, "error": error, "failed_cell": failed_cell, "params_file": str(plan.params_file),
           "kernel": kernel, "started": started, "ended": provenance.now(), "wall_s": round(wall, 2)}
    prov_path = out / "provenance.json"
    prov = json.loads(prov_path.read_text()) if prov_path.exists() else provenance.collect(
        notebook=plan.notebook, tier=plan.tier, params=plan.params, started=started, ended=run["ended"],
        wall_s=wall)
    prov["run"] = run
    write_json(prov_path, prov)
    log.info("[%s/%s] %s in %.1f s", plan.notebook, plan.tier, status, wall)
    return Outcome(plan.notebook, plan.tier, status, out, wall, error, failed_cell)


def run(notebooks: list[str] | None, tier: str, *, notebooks_dir: Path, results: Path,
        cell_timeout: int | None = None) -> list[Outcome]:
    """Validate every plan, then execute them one after another, then rebuild the index."""
    names = notebooks or tiers.available_notebooks(notebooks_dir)
    plans = [tiers.plan(notebooks_dir, name, tier) for name in names]     # raises before anything runs
    kernel = ensure_kernel()
    progress = terminal.RunProgress([p.notebook for p in plans], tier,
                                    history.last_runs(history.read(results), tier))
    outcomes = []
    for p in plans:
        progress.paper_started(p.notebook)
        outcome = execute(p, results, kernel=kernel, cell_timeout=cell_timeout, progress=progress)
        record_history(results, outcome)
        progress.paper_done(p.notebook, outcome.status, outcome.wall_s)
        outcomes.append(outcome)
    index.build(results)
    return outcomes


def record_history(results: Path, outcome: Outcome) -> None:
    """One line in results/history.jsonl for this run: what the index compares the next run with."""
    history.append(results, history.entry_for_run(outcome.output_dir, notebook=outcome.notebook,
                                                  tier=outcome.tier))
