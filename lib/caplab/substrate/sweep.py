"""Independent cached runs on every core: each in its own single-thread process, the results read from the cache.

    runs = parallel([lambda s=s: train_cached(s, corpus, config) for s in shapes])

A tiny model's training step is mostly per-operation overhead (the profile in `make bench`), which a second thread in
the same process does not share; two processes each on one core do. So `parallel(thunks)` forks up to `workers()`
children, each child sets torch to one thread and calls its thunk, which fills the cache (a `train_cached` run, a
`Cache.get_or_compute` entry); the parent then calls every thunk itself, in order, and gets cache hits. Nothing
crosses a process boundary but the cache (no pickling, so closures and local functions work), and a thunk's
result is exactly what the plain loop would compute with one torch thread: same seed, data order, schedule,
checkpoints, resume and cache entry.

A thunk whose work is not cached is simply computed twice, so give `parallel` cached calls only. A child that
fails leaves nothing behind; the parent's own call then raises the real error with its traceback. On a GPU, or with
`CAPLAB_WORKERS=1`, or for a single thunk, the thunks run in this process as a plain loop.
"""
from __future__ import annotations

import io
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
from typing import Any, Callable


WORKERS_ENV = "CAPLAB_WORKERS"


def workers() -> int:
    """Processes to run at once: `$CAPLAB_WORKERS`, else the cores this process may use."""
    value = os.environ.get(WORKERS_ENV)
    if value:
        try:
            count = int(value)
        except ValueError:
            raise ValueError(f"{WORKERS_ENV} must be a positive integer, got {value!r}") from None
        if count < 1:
            raise ValueError(f"{WORKERS_ENV} must be a positive integer, got {value!r}")
        return count
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:         # not Linux
        return os.cpu_count() or 1


def _forkable() -> bool:
    """Forking is safe only before CUDA is initialised, and only where fork exists."""
    import torch
    return "fork" in multiprocessing.get_all_start_methods() and not (
        torch.cuda.is_available() and torch.cuda.is_initialized())


def _child(thunk: Callable[[], Any]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):      # the parent's deferring handlers (caplab.staging) are not ours
        signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)
    import torch
    torch.set_num_threads(1)        # intra-op threads of a forked child (as DataLoader workers do)
    # `datasets` names an in-memory dataset's cache files by a random fingerprint from a generator made at import:
    # forked children would all draw the parent's next fingerprints and share cache files (TRL's DPO reference
    # log-probs of one child's data read back for another's). Each child draws its own.
    fingerprints = sys.modules.get("datasets.fingerprint")
    if fingerprints is not None:
        fingerprints.fingerprint_rng.seed(os.urandom(16))
    # A notebook kernel's stdout is a socket its other threads own (they are not in the child): the child prints
    # nothing there; the parent's own call prints the run's summary line when it reads the entry back. Standard
    # error stays where it is only when it is a plain file (the run's log, `caplab.substrate.runlog`).
    devnull = open(os.devnull, "w")
    sys.stdout = devnull
    if not isinstance(sys.stderr, io.TextIOWrapper):
        sys.stderr = devnull
    thunk()


def parallel(thunks: list[Callable[[], Any]], n_workers: int | None = None, *,
             costs: list[float] | None = None) -> list[Any]:
    """`[t() for t in thunks]`, with the work done first in up to `n_workers` (default `workers()`) forked
    single-thread processes, the costliest first when `costs` (any unit) are given. See the module's docstring for
    what a thunk must be."""
    thunks = list(thunks)
    if costs is not None and len(costs) != len(thunks):
        raise ValueError(f"{len(costs)} costs for {len(thunks)} thunks")
    n = workers() if n_workers is None else int(n_workers)
    if n < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    if n > 1 and len(thunks) > 1 and _forkable():
        order = sorted(range(len(thunks)), key=lambda i: -costs[i]) if costs is not None else range(len(thunks))
        _prefetch([thunks[i] for i in order], n)
    return [thunk() for thunk in thunks]


def _prefetch(thunks: list[Callable[[], Any]], n: int) -> None:
    context = multiprocessing.get_context("fork")
    pending = list(thunks)
    running: list[multiprocessing.Process] = []
    try:
        while pending or running:
            while pending and len(running) < n:
                process = context.Process(target=_child, args=(pending.pop(0),), daemon=False)
                process.start()
                running.append(process)
            sentinels = multiprocessing.connection.wait([p.sentinel for p in running])
            for process in [p for p in running if p.sentinel in sentinels]:
                process.join()
                running.remove(process)
    finally:
        for process in running:         # interrupted: stop the children; the cache drops their partial entries
            process.terminate()
        for process in running:
            process.join()

