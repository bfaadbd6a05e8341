"""One run per results folder at a time: a lock file that names the run holding it.

    results/.caplab-run.lock     {"pid": 1234, "host": "...", "command": "python -m caplab run ...", "started": ...}

The lock is an advisory `flock` on that file, which the system releases when the holder exits, however it exits: a
lock file left by a process that is gone (killed, crashed) is simply taken over. A second run while the first is
alive is refused before anything runs, with the first one's pid, host, command and start time.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import socket
import sys
from pathlib import Path
from typing import Iterator

from caplab.report import provenance

try:
    import fcntl
except ImportError:           # not on POSIX: no lock (a single user's machine)
    fcntl = None

log = logging.getLogger("caplab.runlock")

LOCK_NAME = ".caplab-run.lock"


class RunLocked(RuntimeError):
    """Another run holds this results folder."""


def lock_path(results: Path) -> Path:
    return results / LOCK_NAME


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}: "
            f"{holder.get('command', '?')}")


def _read(fh) -> dict:
    fh.seek(0)
    try:
        data = json.loads(fh.read() or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _command() -> list[str]:
    """This process's command line as typed: `python -m caplab run ...`."""
    args = list(sys.argv)
    if args and Path(args[0]).name == "__main__.py":
        args[0:1] = ["-m", Path(args[0]).parent.name]
    return [Path(sys.executable).name, *args]


@contextlib.contextmanager
def hold(results: Path, command: list[str] | None = None) -> Iterator[dict]:
    """Hold the results folder's run lock for the block, or raise RunLocked naming the run that holds it."""
    results.mkdir(parents=True, exist_ok=True)
    path = lock_path(results)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": shlex.join(command or _command()),
          "started": provenance.now()}
    fh = open(path, "a+", encoding="utf-8")
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fh)
                raise RunLocked(f"another caplab run is using {results}: {_describe(holder)}. Wait for it to finish "
                                f"or stop it (kill {holder.get('pid', '<pid>')}); the lock is {path}") from None
        previous = _read(fh)
        if previous.get("pid"):
            log.warning("taking over the run lock %s left by a run that is gone (%s)", path, _describe(previous))
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(me) + "\n")
        fh.flush()
        try:
            yield me
        finally:
            fh.seek(0)
            fh.truncate()                  # an empty lock file: nobody holds it
            fh.flush()
    finally:
        fh.close()                         # releases the flock
