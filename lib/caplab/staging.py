"""Results that are never lost: a run writes into a staging folder and swaps it in only when it has finished.

    results/<paper>/.<tier>.staging-<pid>/   the run in progress (papermill output, figures, claims, report)
    results/<paper>/<tier>/                  the last finished run (ok or failed), replaced in one rename
    results/<paper>/<tier>.interrupted.json  the last attempt was interrupted; <tier>/ still holds the run before

An interrupted run (Ctrl-C, SIGTERM) discards its staging folder and leaves a record beside the previous results,
which stay readable (the index shows both). A run killed outright (SIGKILL, power loss) leaves its staging folder
behind: the next run, which holds the checkout's run lock, clears it, and puts back a previous run that a kill in
the middle of a swap had moved aside.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any, Iterator

from caplab.substrate.cache import atomic_write_text

log = logging.getLogger("caplab.staging")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def staging_dir(final: Path) -> Path:
    return final.parent / f".{final.name}.staging-{os.getpid()}"


def _old_dir(final: Path) -> Path:
    return final.parent / f".{final.name}.old-{os.getpid()}"


def interrupted_record(final: Path) -> Path:
    return final.parent / f"{final.name}.interrupted.json"


def recover(final: Path) -> None:
    """Clear what a killed run left beside `final` (the caller holds the run lock, so no live run owns it): staging
    folders are removed; a previous run moved aside by a swap that was killed halfway is put back."""
    folder = final.parent
    if not folder.is_dir():
        return
    for old in sorted(folder.glob(f".{final.name}.old-*")):
        if not final.exists():
            os.rename(old, final)
            log.warning("restored %s from %s (a run was killed while swapping its results in)", final, old.name)
        else:
            shutil.rmtree(old, ignore_errors=True)
    for stale in folder.glob(f".{final.name}.staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
        log.info("removed %s, left by a run that was killed", stale)


def new(final: Path) -> Path:
    """An empty staging folder for a run whose results will become `final`."""
    recover(final)
    out = staging_dir(final)
    out.mkdir(parents=True)
    return out


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM received during the block take effect when it is done (main thread only; elsewhere
    Python delivers no signals). Python-level handlers, not a signal mask: another thread may receive the signal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:
            handler = previous[caught[0]]
            if callable(handler):
                handler(caught[0], None)       # default_int_handler raises KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), caught[0])


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
    return done


def swap_in(staging: Path, final: Path) -> None:
    """Make the finished `staging` folder the results at `final` and remove the previous results. A reader sees the
    old folder or the new one (one atomic exchange where the system has it, else two renames); Ctrl-C and SIGTERM
    wait until it is all done, so `staging` no longer exists exactly when the swap happened. The interruption
    record, if any, goes with the old results."""
    with _signals_deferred():
        if not final.exists():
            os.rename(staging, final)
            old = None
        elif _exchange(staging, final):
            old = staging                      # now holds the previous results
        else:
            old = _old_dir(final)
            os.rename(final, old)
            os.rename(staging, final)
        interrupted_record(final).unlink(missing_ok=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def record_interrupted(final: Path, info: dict[str, Any]) -> Path:
    """Note beside `final` that its last attempt was interrupted; `final`, if any, keeps the previous run."""
    path = interrupted_record(final)
    atomic_write_text(path, json.dumps({"status": "interrupted", "previous_kept": final.exists(), **info},
                                       indent=2) + "\n")
    return path


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM, after recording the interruption; the message says what was kept."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (a scheduler's stop, `kill`) interrupts like Ctrl-C, so it is recorded the same
    way. Only in the main thread, where Python can install a signal handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
