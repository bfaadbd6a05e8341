"""What the terminal shows while the runner works: one line per paper and per long step, with the time elapsed and
an estimate of what remains, and the paper's run.log mirrored as it grows. Nothing here reaches a report.

Estimates come from `results/history.jsonl`: the wall time and per-cell durations of the last successful run of the
same paper and tier; without a previous run, from the share of code cells done so far.
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from papermill.engines import NBClientEngine, papermill_engines

ENGINE = "caplab"
LONG_STEP_S = 10.0          # a cell that ran at least this long gets its own line
POLL_S = 0.5


def duration(seconds: float | None) -> str:
    """`42s`, `3m05s`, `1h02m`."""
    if seconds is None:
        return "?"
    seconds = int(round(max(seconds, 0)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class CellProgressEngine(NBClientEngine):
    """papermill's nbclient engine, calling `on_cell(cell, index, n_cells)` after each cell completes."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, on_cell: Callable | None = None, **kwargs):
        if on_cell is not None:
            complete = nb_man.cell_complete

            def cell_complete(cell, cell_index=None, **kw):
                complete(cell, cell_index=cell_index, **kw)
                on_cell(cell, cell_index, nb_man.nb.cells)

            nb_man.cell_complete = cell_complete
        return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)


papermill_engines.register(ENGINE, CellProgressEngine)


class RunProgress:
    """Progress of one `caplab run`: papers in order, each with the estimate its last run gives."""

    def __init__(self, names: list[str], tier: str, previous: dict[str, dict[str, Any]], *,
                 stream: TextIO | None = None):
        self.names, self.tier, self.previous = names, tier, previous
        self.stream = stream
        self.t0 = time.perf_counter()
        self.done: dict[str, float] = {}
        self.current: str | None = None
        self.paper_t0 = self.t0

    def _say(self, line: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()

    def _expected(self, name: str) -> float | None:
        return (self.previous.get(name) or {}).get("wall_s")

    def _left_after_current(self) -> float | None:
        rest = [self._expected(n) for n in self.names if n not in self.done and n != self.current]
        return None if any(r is None for r in rest) else sum(rest)

    def paper_started(self, name: str) -> None:
        self.current, self.paper_t0 = name, time.perf_counter()
        i = self.names.index(name) + 1
        expected = self._expected(name)
        left = self._left_after_current()
        total_left = None if expected is None or left is None else expected + left
        estimate = (f"~{duration(expected)} for this paper" if expected is not None else "no earlier run of this paper")
        if total_left is not None:
            estimate += f", ~{duration(total_left)} left in all (from the last runs)"
        self._say(f"[{i}/{len(self.names)}] {name}/{self.tier}: started · {duration(time.perf_counter() - self.t0)} "
                  f"elapsed · {estimate}")

    def cell_done(self, cell, index: int, cells: list) -> None:
        if cell.get("cell_type") != "code":
            return
        took = (cell.get("metadata", {}).get("papermill") or {}).get("duration") or 0.0
        code = [i for i, c in enumerate(cells) if c.get("cell_type") == "code"]
        done = code.index(index) + 1 if index in code else len(code)
        if took < LONG_STEP_S and done != len(code):
            return
        elapsed = time.perf_counter() - self.paper_t0
        left = self._paper_left(done, len(code), elapsed)
        self._say(f"      {self.current}/{self.tier}: cell {done}/{len(code)} took {duration(took)} · paper "
                  f"{duration(elapsed)} elapsed, ~{duration(left)} left · {_first_line(cell)}")

    def _paper_left(self, done: int, total: int, elapsed: float) -> float | None:
        previous = (self.previous.get(self.current) or {}).get("cell_seconds")
        if previous and len(previous) == total:
            return sum(previous[done:])
        return elapsed * (total - done) / done if done else None

    def paper_done(self, name: str, status: str, wall_s: float) -> None:
        self.done[name] = wall_s
        self.current = None
        i = self.names.index(name) + 1
        left = self._left_after_current()
        self._say(f"[{i}/{len(self.names)}] {name}/{self.tier}: {status} in {duration(wall_s)} · run "
                  f"{duration(time.perf_counter() - self.t0)} elapsed"
                  + (f" · ~{duration(left)} left" if i < len(self.names) and left is not None else ""))


def _first_line(cell) -> str:
    """The first line of a cell's code that is not a comment: which step this was."""
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else source
    lines = [line.strip() for line in source.splitlines() if line.strip() and not line.strip().startswith("#")]
    return (lines[0][:70] + ("…" if len(lines[0]) > 70 else "")) if lines else ""


class LogMirror:
    """Copies the lines appended to a log file to the terminal while a notebook runs (a thread polling the file).
    Progress-bar redraws (carriage returns) keep only their last state."""

    def __init__(self, path: Path, *, prefix: str = "", stream: TextIO | None = None):
        self.path, self.prefix, self.stream = Path(path), prefix, stream
        self._stop = threading.Event()
        self._offset = 0
        self._partial = b""
        self._thread = threading.Thread(target=self._loop, name=f"mirror {path}", daemon=True)

    def __enter__(self) -> "LogMirror":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._drain(final=True)

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            self._drain()

    def _drain(self, final: bool = False) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = b"" if final else lines.pop()
        stream = self.stream or sys.stderr
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r").split("\r")[-1].rstrip()
            if line:
                stream.write(f"{self.prefix}{line}\n")
        stream.flush()
