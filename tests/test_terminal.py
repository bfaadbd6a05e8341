"""What a run shows in the terminal and what it keeps out of the notebook: the log capture, the mirror, progress."""
import io
import os
import subprocess
import sys

from caplab import progress
from caplab.substrate import runlog


def test_capture_routes_stderr_logging_warnings_and_c_output_to_the_log(tmp_path):
    log = tmp_path / "run.log"
    code = (
        "import logging, os, sys, warnings\n"
        "import caplab\n"                                    # capture happens on import, under the runner
        "warnings.warn('w-warning', FutureWarning)\n"
        "logging.getLogger('transformers.x').warning('w-logging')\n"
        "sys.stderr.write('w-stderr\\n'); sys.stderr.flush()\n"
        "os.write(2, b'w-fd2\\n')\n"
        "from caplab.substrate.runlog import summary\n"
        "summary('pretrain llama d64x2', steps=500, tokens=1_234_567, loss=1.2345, seconds=35.2, cached=True)\n")
    env = {**os.environ, runlog.LOG_ENV: str(log)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = log.read_text()
    for chatter in ("w-warning", "w-logging", "w-stderr", "w-fd2"):
        assert chatter in text and chatter not in done.stderr + done.stdout, chatter
    line = "pretrain llama d64x2: 500 steps, 1.23M tokens, final loss 1.234, 35 s when trained (cache hit)"
    assert done.stdout.strip() == line and line in text      # the summary: in the cell and in the log


def test_without_the_runner_nothing_is_redirected():
    env = {k: v for k, v in os.environ.items() if k != runlog.LOG_ENV}
    done = subprocess.run([sys.executable, "-c", "import sys, caplab; sys.stderr.write('still here')"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.stderr == "still here"


def test_describe_model_specs():
    assert runlog.describe({"family": "llama", "d_model": 64, "n_layer": 2}) == "llama d64x2"
    assert runlog.describe({"pretrained": "EleutherAI/pythia-70m"}) == "EleutherAI/pythia-70m"
    assert runlog.describe({"path": "/c/pretrain/ab12cd34ef56/model"}) == "pretrain ab12cd34"


def test_log_mirror_copies_lines_and_keeps_the_last_state_of_a_progress_bar(tmp_path):
    log, shown = tmp_path / "run.log", io.StringIO()
    log.write_text("")
    with progress.LogMirror(log, prefix="nb | ", stream=shown):
        with open(log, "a") as fh:
            fh.write("first line\n 10%|#   | 1/10\r 100%|####| 10/10\nno newline yet")
    assert shown.getvalue() == "nb | first line\nnb |  100%|####| 10/10\nnb | no newline yet\n"


def test_progress_lines_estimate_from_the_previous_run():
    shown = io.StringIO()
    previous = {"a": {"wall_s": 120.0, "cell_seconds": [1.0, 60.0, 59.0]}, "b": {"wall_s": 30.0}}
    run = progress.RunProgress(["a", "b"], "smoke", previous, stream=shown)
    run.paper_started("a")
    cells = [{"cell_type": "markdown"}] + [{"cell_type": "code", "source": f"# step\nstep_{i}()",
                                           "metadata": {"papermill": {"duration": d}}}
                                          for i, d in enumerate((0.5, 61.0, 58.0))]
    run.cell_done(cells[1], 1, cells)         # short: no line
    run.cell_done(cells[2], 2, cells)         # long: a line, with the previous run's last cell as what is left
    run.paper_done("a", "ok", 125.0)
    lines = shown.getvalue().splitlines()
    assert lines[0].startswith("[1/2] a/smoke: started") and "~2m00s for this paper" in lines[0]
    assert "~2m30s left in all" in lines[0]
    assert "cell 2/3 took 1m01s" in lines[1] and "~59s left" in lines[1] and lines[1].endswith("step_1()")
    assert lines[2].startswith("[1/2] a/smoke: ok in 2m05s") and "~30s left" in lines[2]
    assert len(lines) == 3
    assert progress.duration(3725) == "1h02m" and progress.duration(None) == "?"
    fresh = io.StringIO()
    progress.RunProgress(["a"], "cpu", {}, stream=fresh).paper_started("a")
    assert "no earlier run of this paper" in fresh.getvalue() and "left in all" not in fresh.getvalue()
