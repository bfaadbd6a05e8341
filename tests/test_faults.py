"""Runs that survive faults and typos: interruptions keep the last good results, a killed run or training resumes to
the same numbers, one run at a time, errors before compute (incomplete tier files, models missing from the cache,
stray notebooks), timeouts and failures that say where, files others can read."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import nbformat
import pytest

from caplab import preflight, runlock, runner, staging
from caplab.cli import main
import demo_paper  # noqa: F401  (registers the fixture papers in this process too)
from conftest import FIXTURES, REPO

DEAD_PID = 999_999_999            # above any pid_max: never a live process


def run_cli(results, *args, notebooks=FIXTURES):
    return main(["--notebooks", str(notebooks), "--results", str(results), *args])


def metrics(results):
    return json.loads((results / "demo" / "smoke" / "metrics.json").read_text())["metrics"]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """One uninterrupted smoke run of the demo notebook."""
    results = tmp_path_factory.mktemp("baseline") / "results"
    assert run_cli(results, "run", "demo", "--tier", "smoke") == 0
    return results


# -- 1. staging, swap, interruption ---------------------------------------------------------------------------------
def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def _finished_elsewhere(plan, out, **kwargs):
    """A notebook run that finished into its staging folder (no kernel): metrics that must never reach results."""
    (out / "metrics.json").write_text('{"metrics": "from the interrupted run"}')
    return runner.Outcome(plan.notebook, plan.tier, "ok", out, 0.1)


@pytest.mark.notebook
def test_interrupted_runs_keep_the_previous_results_and_a_rerun_gives_the_same_metrics(baseline, tmp_path,
                                                                                        monkeypatch, capsys):
    import papermill
    results = tmp_path / "results"
    shutil.copytree(baseline, results)
    before = (results / "demo" / "smoke" / "metrics.json").read_bytes()
    points = {"starting the kernel": [(papermill, "execute_notebook", _interrupt)],
              "rendering the report": [(runner, "render_html", _interrupt)],
              "swapping the results in": [(runner, "_execute_into", _finished_elsewhere),
                                          (staging, "swap_in", _interrupt)]}
    for point, patches in points.items():
        for owner, name, fake in patches:
            monkeypatch.setattr(owner, name, fake)
        assert run_cli(results, "run", "demo", "--tier", "smoke") == 130, point
        monkeypatch.undo()
        err = capsys.readouterr().err
        assert err.count("caplab: interrupted") == 1 and "Traceback" not in err, point
        out = results / "demo" / "smoke"
        assert (out / "metrics.json").read_bytes() == before, point
        assert (out / "report.html").exists() and not list(out.parent.glob(".smoke.*")), point
        record = json.loads((results / "demo" / "smoke.interrupted.json").read_text())
        assert record["status"] == "interrupted" and record["previous_kept"], point
        index = (results / "index.html").read_text()
        assert "interrupted" in index and 'href="demo/smoke/report.html"' in index, point
        assert "| demo | smoke | interrupted" in (results / "scorecard.md").read_text(), point
        assert (results / runlock.LOCK_NAME).read_text() == "", point           # the lock was released
    assert run_cli(results, "run", "demo", "--tier", "smoke") == 0
    assert metrics(results) == metrics(baseline)
    assert not (results / "demo" / "smoke.interrupted.json").exists()
    assert "interrupted" not in (results / "index.html").read_text()


def test_ctrl_c_during_the_swap_waits_until_the_new_results_are_in(baseline, tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    shutil.copytree(baseline, results)
    real_exchange = staging._exchange

    def ctrl_c_then_exchange(a, b):
        os.kill(os.getpid(), signal.SIGINT)          # delivered only once the swap is complete
        return real_exchange(a, b)

    monkeypatch.setattr(runner, "_execute_into", _finished_elsewhere)
    monkeypatch.setattr(staging, "_exchange", ctrl_c_then_exchange)
    assert run_cli(results, "run", "demo", "--tier", "smoke") == 130
    assert "interrupted: after demo/smoke finished" in capsys.readouterr().err
    assert json.loads((results / "demo" / "smoke" / "metrics.json").read_text()) == {
        "metrics": "from the interrupted run"}                 # the finished run's results, whole
    assert not (results / "demo" / "smoke.interrupted.json").exists()
    assert sorted(p.name for p in (results / "demo").iterdir()) == ["smoke"]


def test_leftovers_of_a_killed_run_are_cleared_and_a_halfway_swap_is_undone(tmp_path):
    final = tmp_path / "results" / "demo" / "smoke"
    moved = final.with_name(f".smoke.old-{DEAD_PID}")          # killed between the two renames of a swap
    moved.mkdir(parents=True)
    (moved / "metrics.json").write_text("previous")
    stale = final.with_name(f".smoke.staging-{DEAD_PID}")
    stale.mkdir()
    fresh = staging.new(final)
    assert (final / "metrics.json").read_text() == "previous" and not moved.exists() and not stale.exists()
    (fresh / "metrics.json").write_text("new")
    staging.swap_in(fresh, final)
    assert (final / "metrics.json").read_text() == "new" and sorted(p.name for p in final.parent.iterdir()) == ["smoke"]


def test_sigterm_interrupts_like_ctrl_c():
    with pytest.raises(KeyboardInterrupt):
        with staging.sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


# -- 3. one run at a time -------------------------------------------------------------------------------------------
def _started(results, notebook="slow"):
    executed = list((results / notebook).glob(".smoke.staging-*/slow.ipynb"))
    return bool(executed) and '"output_type": "stream"' in executed[0].read_text()


@pytest.mark.notebook
def test_a_second_run_is_refused_and_ctrl_c_prints_one_line(tmp_path, capsys):
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "lib"), str(FIXTURES), os.environ.get(
        "PYTHONPATH", "")])}
    code = ("import sys, demo_paper; from caplab.cli import main; "
            f"sys.exit(main(['--notebooks', {str(FIXTURES)!r}, '--results', {str(results)!r}, 'run', 'slow', "
            "'--tier', 'smoke']))")
    first = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not _started(results) and first.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert _started(results), first.communicate()[1] if first.poll() is not None else "never started"
        assert run_cli(results, "run", "demo", "--tier", "smoke") == 2
        err = capsys.readouterr().err
        assert f"pid {first.pid} on {socket.gethostname()}, started 20" in err and f"kill {first.pid}" in err
        assert not (results / "demo").exists()                   # the refused run touched nothing
        os.killpg(first.pid, signal.SIGINT)                       # Ctrl-C in the terminal: the whole group
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130
    assert err.count("caplab: interrupted") == 1 and "Traceback" not in err, err
    assert (results / runlock.LOCK_NAME).read_text() == ""
    assert not list((results / "slow").glob(".smoke.*"))
    assert "interrupted" in (results / "index.html").read_text()
    assert "| slow | smoke | interrupted" in (results / "scorecard.md").read_text()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    results = tmp_path / "results"
    results.mkdir()
    (results / runlock.LOCK_NAME).write_text(json.dumps({"pid": DEAD_PID, "host": "gone", "command": "caplab"}))
    with runlock.hold(results, ["caplab", "run"]) as me:
        assert json.loads((results / runlock.LOCK_NAME).read_text())["pid"] == me["pid"] == os.getpid()
        with pytest.raises(runlock.RunLocked, match=f"pid {os.getpid()} on {socket.gethostname()}.*caplab run"):
            with runlock.hold(results):
                pass
    assert "taking over the run lock" in caplog.text and str(DEAD_PID) in caplog.text


# -- 4. tier files set every parameter ------------------------------------------------------------------------------
@pytest.mark.parametrize("content, message", [("", "is empty: it does not set label, n, seed, shift"),
                                              ("# nothing yet\n", "is empty: it does not set label, n, seed, shift"),
                                              ("n: 5\nseed: 1\n", "does not set label, shift")])
def test_an_empty_or_partial_tier_file_is_refused(tmp_path, capsys, content, message):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(FIXTURES, notebooks)
    (notebooks / "params" / "demo" / "smoke.yaml").write_text(content)
    assert run_cli(tmp_path / "results", "run", "demo", "--tier", "smoke", notebooks=notebooks) == 2
    err = capsys.readouterr().err
    assert message in err and str(notebooks / "params" / "demo" / "smoke.yaml") in err
    assert not (tmp_path / "results").exists()
    assert run_cli(tmp_path / "results", "validate", "demo", "--tiers", "smoke", notebooks=notebooks) == 1
    assert message in capsys.readouterr().out


# -- 5. gpu preflight -----------------------------------------------------------------------------------------------
def _fake_hub_model(hf_home, model_id, revision="main"):
    """A tiny model saved in the layout of the Hugging Face hub cache under `model_id` at `revision`."""
    from caplab.substrate.models import tiny_model
    repo = hf_home / "hub" / f"models--{model_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    model, tokenizer = tiny_model("0.1M")
    model.save_pretrained(repo / "snapshots" / commit)
    tokenizer.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / revision).write_text(commit)


def test_gpu_preflight_lists_what_the_cache_lacks_before_anything_runs(tmp_path, monkeypatch, capsys):
    hf_home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    _fake_hub_model(hf_home, "caplab-test/tiny-lm")
    (hf_home / "datasets" / "caplab-test___present" / "main" / "0.0.0" / "abc").mkdir(parents=True)
    from caplab.substrate.models import hub_cache_dir, load_pretrained
    assert preflight._hub_cache() == hub_cache_dir()                   # the same cache the loader reads
    assert load_pretrained("caplab-test/tiny-lm", "main")[0].num_parameters() > 0       # a realistic cache

    notebooks = tmp_path / "notebooks"
    (notebooks / "params" / "hub").mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("tier = 'cpu'\nmodel = {}\nfamily = {}\ntasks = []",
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("raise RuntimeError('a cell ran')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, notebooks / "hub.ipynb")
    (notebooks / "params" / "hub" / "gpu.yaml").write_text(
        "model: {pretrained: caplab-test/tiny-lm, revision: main}\n"
        "family: {kind: hub, models: [caplab-test/tiny-lm, caplab-test/absent], revisions: [main]}\n"
        "tasks:\n"
        "  - {kind: hf_pairs, path: caplab-test/present, name: main, split: train}\n"
        "  - {kind: hf_multiple_choice, path: caplab-test/absent-data, names: [algebra], split: test}\n")
    started = time.perf_counter()
    assert run_cli(tmp_path / "results", "run", "hub", "--tier", "gpu", notebooks=notebooks) == 2
    assert time.perf_counter() - started < 30
    err = capsys.readouterr().err
    assert "model caplab-test/absent at revision main is not cached" in err
    assert "HF_HUB_OFFLINE=0 hf download caplab-test/absent --revision main" in err
    assert "dataset caplab-test/absent-data (config algebra) at revision main is not cached" in err
    assert "datasets.load_dataset('caplab-test/absent-data', 'algebra')" in err
    assert "tiny-lm" not in err and "caplab-test/present" not in err
    assert not (tmp_path / "results").exists()                   # refused before the lock, the kernel, anything

    plan = runner.tiers.plan(notebooks, "hub", "gpu")
    assert [n.id for n in preflight.missing(plan.params)] == ["caplab-test/absent", "caplab-test/absent-data"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")                    # downloads allowed: no preflight
    preflight.check([plan])


# -- 6. smaller items -----------------------------------------------------------------------------------------------
def test_papers_come_from_the_registry_and_a_stray_notebook_is_ignored(tmp_path, caplog, capsys):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(FIXTURES, notebooks)
    shutil.copy(notebooks / "demo.ipynb", notebooks / "demo-Copy1.ipynb")     # JupyterLab's "Duplicate"
    names = runner.registered_notebooks(notebooks)
    assert names == ["demo", "failing", "slow"]
    assert "ignoring demo-Copy1.ipynb" in caplog.text
    assert run_cli(tmp_path / "results", "validate", "--tiers", "smoke", notebooks=notebooks) == 0
    assert "Copy1" not in capsys.readouterr().out


@pytest.mark.notebook
def test_a_timeout_keeps_its_cell_and_a_failure_shows_its_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAPLAB_CELL_TIMEOUT", "4")
    results = tmp_path / "results"
    assert run_cli(results, "run", "failing", "slow", "--tier", "smoke") == 1
    out = capsys.readouterr().out
    assert "raise RuntimeError('planted failure')" in out and "RuntimeError: planted failure" in out
    run = json.loads((results / "slow" / "smoke" / "provenance.json").read_text())["run"]
    # cell [4]: the sleep, after the parameters cell, papermill's injected parameters and the first print
    assert run["status"] == "failed" and run["failed_cell"] == 4 and "cell [4]" in run["error"]
    assert "timed out" in run["error"]


def test_a_bad_cell_timeout_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAPLAB_CELL_TIMEOUT", "ten minutes")
    assert run_cli(tmp_path / "results", "run", "demo", "--tier", "smoke") == 2
    assert "CAPLAB_CELL_TIMEOUT must be a positive number of seconds" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_make_passes_the_cell_timeout_and_lets_root_start_jupyter():
    def dry(*args):
        return subprocess.run(["make", "-n", "-C", str(REPO), *args], capture_output=True, text=True,
                              check=True).stdout
    assert "caplab run --tier smoke --cell-timeout 1200 kappa" in dry("reproduce", "PROFILE=smoke",
                                                                      "CELL_TIMEOUT=1200", "PAPERS=kappa")
    assert "--cell-timeout" not in dry("reproduce")
    assert ("--allow-root" in dry("lab")) == (os.geteuid() == 0)


def test_result_files_are_readable_by_others_as_the_umask_allows(baseline):
    umask = os.umask(0o022)
    os.umask(umask)
    out = baseline / "demo" / "smoke"
    for name in ("claims.json", "metrics.json", "provenance.json", "report.html", "demo.ipynb"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    assert (baseline / "index.html").stat().st_mode & 0o777 == 0o666 & ~umask


# -- a killed training resumes to the same numbers ------------------------------------------------------------------
TRAINING = """
import os, signal, sys
import torch
from caplab.substrate import data
from caplab.substrate.cache import Cache
from caplab.substrate.models import tiny_model
from caplab.substrate.train import TrainConfig, train_cached

def run(cache, kill_at="never"):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)           # the same sums in the same order here and in the killed process
    try:
        return _run(cache, kill_at)
    finally:
        torch.set_num_threads(threads)

def _run(cache, kill_at):
    tok = tiny_model("0.1M")[1]
    blocks = data.pack_blocks(data.zipf_language(200, vocab_size=40, seed=0), tok, 32)
    config = TrainConfig(steps=12, batch_size=8, lr=3e-3, warmup_steps=2, save_every=4, checkpoint_tokens=(768, 2304))

    def kill(model, info):
        if info["target_tokens"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    return train_cached({"size": "0.1M", "seed": 0}, blocks, config, cache=Cache(cache, version="t"), callbacks=[kill])

if __name__ == "__main__":
    run(sys.argv[1], {"mid-training": 2304, "after the last step": None}[sys.argv[2]])
"""


def test_a_training_killed_at_several_points_resumes_to_identical_metrics(tmp_path):
    import pandas as pd
    (tmp_path / "training.py").write_text(TRAINING)
    sys.path.insert(0, str(tmp_path))
    try:
        import training
    finally:
        sys.path.remove(str(tmp_path))
    reference = training.run(tmp_path / "reference").path
    for point in ("mid-training", "after the last step"):
        cache = tmp_path / point.replace(" ", "-")
        killed = subprocess.run([sys.executable, str(tmp_path / "training.py"), str(cache), point], timeout=300,
                                env={**os.environ, "PYTHONPATH": str(REPO / "lib")})
        assert killed.returncode == -signal.SIGKILL, point
        assert list(cache.glob("train/*.scratch/state.pt")) and not list(cache.glob("train/*/COMPLETE")), point
        resumed = training.run(cache).path
        for name in ("log.csv", "evals.csv", "checkpoints.csv"):
            columns = ["step", "tokens", "loss", "lr", "grad_norm"] if name == "log.csv" else None
            a, b = pd.read_csv(resumed / name, usecols=columns), pd.read_csv(reference / name, usecols=columns)
            assert a.equals(b), (point, name)
        for weights in ("model/model.safetensors", "checkpoints/tokens-000000002304/model.safetensors"):
            assert (resumed / weights).read_bytes() == (reference / weights).read_bytes(), (point, weights)
