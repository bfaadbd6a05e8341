"""The runner: execute paper notebooks at a tier with papermill, render them with nbconvert, rebuild the index.

Every plan is validated before the first notebook executes, and every model and dataset it names is looked up in
the local caches (`preflight`). One run per results folder at a time (`runlock`). Each notebook runs into a staging
folder that replaces its previous results only once finished (`staging`): a failing notebook keeps its partial
output and HTML, is marked failed with the failing cell, and the other notebooks still run; an interrupted one
(Ctrl-C, SIGTERM) keeps the previous results and is recorded as interrupted. `run` returns the outcomes and the
caller exits non-zero if any failed.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from caplab import memplan, paths, preflight, runlock, staging, tiers
from caplab import progress as terminal
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
# Defaults for the kernel's environment (a value already set wins): offline hub, text progress, no load bars, and
# torch's OpenMP threads sleeping rather than spinning while they wait: on a machine whose cores are busy elsewhere,
# a 0.1M model's training step with two threads took 0.23-0.98 s spinning and 0.07-0.13 s passive (one thread:
# 0.07-0.14 s; load 4-6 on two cores, caplab.bench's model, 20 steps).
KERNEL_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
              "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
              "TRANSFORMERS_VERBOSITY": "error", "TQDM_MININTERVAL": "5", "OMP_WAIT_POLICY": "PASSIVE"}


@dataclass
class Outcome:
    notebook: str
    tier: str
    status: str                  # "ok" or "failed"
    output_dir: Path
    wall_s: float
    error: str | None = None
    failed_cell: int | None = None
    traceback: str | None = None         # the failing cell's traceback, last lines


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


def render_html(executed: Path, html: Path, failure: str | None = None, *, notebook: str | None = None,
                tier: str | None = None) -> None:
    """nbconvert the executed notebook to the HTML report (the project's template: the answer first, code folded);
    `failure` says why the run failed, at the top. The run is rendered in its staging folder, so its notebook and
    tier are given, never read from the folder's name."""
    from caplab.report.render import render
    render(executed, html, failure=failure, notebook=notebook, tier=tier)


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
            engine_name=terminal.ENGINE, on_cell=progress.cell_done if progress else None,
            shutdown_kernel="immediate")       # no graceful-shutdown race (a kernel traceback) on Ctrl-C or timeout


def _mark_not_run(plan: tiers.Plan, out: Path, reason: str) -> None:
    """A run that failed before recording its verdicts: every claim is "not run", with the reason."""
    claims = [{**c.as_dict(), "claim": c.id, "verdict": NOT_RUN, "reason": reason, "evidence": []}
              for c in claims_for_notebook(plan.notebook)]
    write_json(out / "claims.json", {"notebook": plan.notebook, "tier": plan.tier, "claims": claims})


def execute(plan: tiers.Plan, results: Path, *, kernel: str, cell_timeout: int | None = None,
            progress: terminal.RunProgress | None = None) -> Outcome:
    """Run one plan into a staging folder and swap it in as `results/<notebook>/<tier>` once finished (ok or
    failed). Interrupted (Ctrl-C, SIGTERM), the staging folder is dropped, the previous results stay, the
    interruption is recorded beside them and `staging.RunInterrupted` is raised."""
    final = results / plan.notebook / plan.tier
    out = staging.new(final)
    started, t0 = provenance.now(), time.perf_counter()
    try:
        outcome = _execute_into(plan, out, kernel=kernel, cell_timeout=cell_timeout, progress=progress)
        staging.swap_in(out, final)
    except KeyboardInterrupt:
        if not out.exists():                  # swapped in: this notebook finished, the run stops after it
            raise staging.RunInterrupted(f"after {plan.notebook}/{plan.tier} finished ({final})") from None
        staging.discard(out)
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)    # the dead kernel's pending reply: not news
        wall = time.perf_counter() - t0
        record = staging.record_interrupted(final, {"notebook": plan.notebook, "tier": plan.tier, "started": started,
                                                    "ended": provenance.now(), "wall_s": round(wall, 2)})
        kept = "previous results kept" if final.exists() else "no previous results"
        log.warning("[%s/%s] interrupted after %.1f s; %s (%s)", plan.notebook, plan.tier, wall, kept, record)
        raise staging.RunInterrupted(f"{plan.notebook}/{plan.tier} after {wall:.0f} s; {kept}; recorded in "
                                     f"{record}") from None
    return dataclasses.replace(outcome, output_dir=final)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _traceback_tail(lines: list[str] | None, n: int = 20) -> str | None:
    """The last `n` lines of a kernel traceback, without terminal colours."""
    text = _ANSI.sub("", "\n".join(lines or []))
    tail = [line for line in text.splitlines() if line.strip()][-n:]
    return "\n".join(tail) or None


def _failed_cell(executed: Path) -> int | None:
    """The execution count of the cell that stopped the run (a timeout raises no cell error): the first cell with an
    error output, else the last one that started."""
    import nbformat
    try:
        cells = [c for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"]
    except (OSError, ValueError):
        return None
    for cell in cells:
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return cell.get("execution_count")
    started = [c for c in cells if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    return started[-1].get("execution_count") if started else None


def _execute_into(plan: tiers.Plan, out: Path, *, kernel: str, cell_timeout: int | None = None,
                  progress: terminal.RunProgress | None = None) -> Outcome:
    from papermill.exceptions import PapermillExecutionError

    executed, html = out / f"{plan.notebook}.ipynb", out / "report.html"
    started, t0 = provenance.now(), time.perf_counter()
    status, error, failed_cell, trace = "ok", None, None, None
    env_before = dict(os.environ)
    os.environ[OUTPUT_ENV] = str(out.resolve())
    for key, value in KERNEL_ENV.items():
        os.environ.setdefault(key, value)
    log.info("[%s/%s] executing %s -> %s", plan.notebook, plan.tier, plan.path, out)
    try:
        execute_with_log(plan, executed, out, kernel=kernel, timeout=cell_timeout or CELL_TIMEOUT[plan.tier],
                         progress=progress)
    except PapermillExecutionError as exc:
        if exc.ename == "KeyboardInterrupt":    # Ctrl-C reached the kernel too: the run was interrupted
            raise KeyboardInterrupt from None
        status, failed_cell = "failed", exc.exec_count
        error = f"cell [{exc.exec_count}] raised {exc.ename}: {exc.evalue}"
        trace = _traceback_tail(exc.traceback)
    except Exception as exc:  # kernel died, timeout, ...: still a failed paper, not a crashed suite
        status, error, failed_cell = "failed", f"{type(exc).__name__}: {exc}", _failed_cell(executed)
        if failed_cell is not None:
            error = f"cell [{failed_cell}]: {error}"
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    wall = time.perf_counter() - t0
    if status == "failed":
        log.error("[%s/%s] FAILED after %.1f s: %s", plan.notebook, plan.tier, wall, error)
        _mark_not_run(plan, out, f"the notebook failed: {error}")
    if executed.exists():
        try:
            render_html(executed, html, failure=error, notebook=plan.notebook, tier=plan.tier)
        except Exception as exc:  # a render failure must not hide the run's outcome
            status, error = "failed", error or f"rendering HTML failed: {exc}"
    run = {"status": status, "error": error, "failed_cell": failed_cell, "params_file": str(plan.params_file),
           "shrunk": plan.shrunk,
           "kernel": kernel, "started": started, "ended": provenance.now(), "wall_s": round(wall, 2)}
    prov_path = out / "provenance.json"
    prov = json.loads(prov_path.read_text()) if prov_path.exists() else provenance.collect(
        notebook=plan.notebook, tier=plan.tier, params=plan.params, started=started, ended=run["ended"],
        wall_s=wall)
    prov["run"] = run
    write_json(prov_path, prov)
    log.info("[%s/%s] %s in %.1f s", plan.notebook, plan.tier, status, wall)
    return Outcome(plan.notebook, plan.tier, status, out, wall, error, failed_cell, trace)


def registered_notebooks(notebooks_dir: Path) -> list[str]:
    """The notebooks of the registered papers that exist in `notebooks_dir`, in registry order. A notebook no paper
    names (JupyterLab's `kappa-Copy1.ipynb`, a scratch file) is ignored with a warning."""
    from caplab.report.registry import papers
    registered = list(dict.fromkeys(p.notebook for p in papers().values()))
    present = {p.stem for p in notebooks_dir.glob("*.ipynb")}
    stray = sorted(present - set(registered))
    if stray:
        log.warning("ignoring %s in %s: no registered paper names them (papers come from the registry, "
                    "caplab/report/papers.yaml)", ", ".join(f"{s}.ipynb" for s in stray), notebooks_dir)
    return [name for name in registered if name in present]


CELL_TIMEOUT_ENV = "CAPLAB_CELL_TIMEOUT"


def cell_timeout_from_env(given: int | None) -> int | None:
    """The per-cell timeout: `given` (the --cell-timeout option), else `$CAPLAB_CELL_TIMEOUT`, else None (by tier).
    A value that is not a positive number of seconds is refused before anything runs."""
    raw = given if given is not None else os.environ.get(CELL_TIMEOUT_ENV)
    if raw is None or raw == "":
        return None
    try:
        seconds = int(raw)
    except ValueError:
        seconds = 0
    if seconds <= 0:
        source = "--cell-timeout" if given is not None else CELL_TIMEOUT_ENV
        raise tiers.ParameterError(f"{source} must be a positive number of seconds, got {raw!r}")
    return seconds


def run(notebooks: list[str] | None, tier: str, *, notebooks_dir: Path, results: Path,
        cell_timeout: int | None = None, shrink: bool = False) -> list[Outcome]:
    """Validate every plan and check that what they name is cached, take the results folder's run lock, then
    execute the plans one after another and rebuild the index (also after an interruption). `shrink`: the tier's
    counts made small (`caplab.shrink`), a check of the pipeline."""
    names = notebooks or registered_notebooks(notebooks_dir)
    if shrink and Path(results).resolve() == paths.results_dir().resolve():
        raise tiers.ParameterError(f"a shrunk run checks the pipeline, its verdicts are not results: give it another "
                                   f"results folder than {paths.results_dir()} (python -m caplab --results DIR run "
                                   f"--shrink ...)")
    plans = [tiers.plan(notebooks_dir, name, tier, shrink=shrink) for name in names]   # raises before anything runs
    cell_timeout = cell_timeout_from_env(cell_timeout)
    preflight.check(plans)
    memplan.check(plans)                  # on a GPU: runs that cannot fit it, before any compute
    with runlock.hold(results):
        kernel = ensure_kernel()
        progress = terminal.RunProgress([p.notebook for p in plans], tier,
                                        history.last_runs(history.read(results), tier))
        outcomes = []
        try:
            with staging.sigterm_as_interrupt():
                for p in plans:
                    progress.paper_started(p.notebook)
                    outcome = execute(p, results, kernel=kernel, cell_timeout=cell_timeout, progress=progress)
                    record_history(results, outcome)
                    progress.paper_done(p.notebook, outcome.status, outcome.wall_s)
                    outcomes.append(outcome)
        finally:
            index.build(results)
    return outcomes


def record_history(results: Path, outcome: Outcome) -> None:
    """One line in results/history.jsonl for this run: what the index compares the next run with."""
    history.append(results, history.entry_for_run(outcome.output_dir, notebook=outcome.notebook,
                                                  tier=outcome.tier))
