"""Where a run's chatter goes: library and trainer output to `run.log`, one summary line per training run in the cell.

The runner names the log file in `$CAPLAB_RUN_LOG` for the notebook's kernel; `import caplab` then calls
`capture()`, which sends everything written to standard error (Python's `sys.stderr`, file descriptor 2 for C
extensions), the `logging` module (transformers, TRL, datasets, accelerate included), `warnings` and tqdm progress
bars to that file. Standard output stays in the notebook: what a notebook prints is part of the report. The runner
mirrors the file to the terminal while the notebook runs.

Run interactively (no `$CAPLAB_RUN_LOG`) nothing is redirected.

    summary("pretrain llama d64", steps=500, tokens=1_020_000, loss=1.23, seconds=35.2, cached=False)
    # -> "pretrain llama d64: 500 steps, 1.02M tokens, final loss 1.230, 35 s"  (in the cell and in run.log)
"""
from __future__ import annotations

import logging
import os
import sys

LOG_ENV = "CAPLAB_RUN_LOG"
log = logging.getLogger("caplab")
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_captured: dict[str, object] = {}


def capture(path: str | os.PathLike | None = None) -> bool:
    """Route standard error, logging, warnings and progress bars to `path` (default `$CAPLAB_RUN_LOG`).
    Returns whether anything was routed; calling it again is harmless."""
    path = os.fspath(path) if path is not None else os.environ.get(LOG_ENV)
    if not path or _captured.get("path") == path:
        return bool(path)
    stream = open(path, "a", buffering=1, encoding="utf-8", errors="replace")   # line-buffered: tail -f works
    try:
        os.dup2(stream.fileno(), 2)          # C and subprocess output to fd 2 (torch, tokenizers) lands here too
    except OSError:
        pass
    previous = sys.stderr
    sys.stderr = stream
    _retarget_handlers(previous, stream)
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    root.addHandler(handler)
    log.setLevel(logging.INFO)
    logging.captureWarnings(True)           # warnings -> the "py.warnings" logger -> this file
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    _captured.update(path=path, stream=stream, handler=handler)
    return True


def _retarget_handlers(old, new) -> None:
    """Loggers configured before the capture (their StreamHandler holds the old stderr) write to the file too."""
    managers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in managers:
        for h in getattr(logger, "handlers", []):
            if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) in (old, sys.__stderr__):
                h.setStream(new)


def captured() -> bool:
    return "path" in _captured


def summary(what: str, *, steps: int | None = None, tokens: int | None = None, loss: float | None = None,
            seconds: float | None = None, cached: bool = False, note: str = "") -> str:
    """One line saying what a training run did, printed in the notebook cell and written to the run log."""
    parts = []
    if steps is not None:
        parts.append(f"{steps:,} steps")
    if tokens:
        parts.append(f"{_si(tokens)} tokens")
    if loss is not None:
        parts.append(f"final loss {loss:.4g}")
    if note:
        parts.append(note)
    if seconds is not None:
        parts.append(f"{seconds:.0f} s" + (" when trained" if cached else ""))
    line = f"{what}: {', '.join(parts) or 'done'}{' (cache hit)' if cached else ''}"
    print(line, flush=True)
    log.info(line)
    return line


def progress(line: str) -> None:
    """A progress line of a long step: to the run log (and so the terminal) under the runner, else printed."""
    if captured():
        log.info(line)
    else:
        print(line, flush=True)


def describe(spec: dict) -> str:
    """A model spec in a few words: `llama d64x2`, a hub id, or the cache entry a local path points into
    (`pretrain e1c61b13`: the step and the start of its key)."""
    if "pretrained" in spec:
        return str(spec["pretrained"])
    if "path" in spec:
        parts = [p for p in str(spec["path"]).replace(os.sep, "/").split("/") if p and p != "model"]
        return " ".join([*parts[-2:-1], parts[-1][:8]]) if parts else "model"
    shape = f"d{spec['d_model']}x{spec['n_layer']}" if "d_model" in spec and "n_layer" in spec else ""
    return " ".join(str(x) for x in (spec.get("family", "model"), shape) if x)


def _si(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"


def quiet_trainer(trainer) -> None:
    """A transformers/TRL Trainer's per-step log dictionaries go to the run log, not to standard output."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback

    class LogToRunLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_local_process_zero and logs:
                logging.getLogger("caplab.trainer").info("step %d/%d %s", state.global_step, state.max_steps,
                                                         {k: round(v, 5) if isinstance(v, float) else v
                                                          for k, v in logs.items()})

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(LogToRunLog())

