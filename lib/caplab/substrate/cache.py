"""The on-disk cache of expensive steps (training runs, sweeps, evaluations).

An entry's key is made of the step's name, its resolved arguments (canonical JSON) and the source version of
the library's computing layers (substrate and science), so a rerun of an unchanged notebook reads its entries
back and a change to the computing code recomputes them. A key holds content and relative names only: an argument
that points inside the cache (an upstream entry's model folder) is keyed by its place relative to the cache root,
which is made of the upstream entry's own key, so a cache that is copied or moved (another `CAPLAB_CACHE`, a
restored CI cache, a moved clone) is reused as it is.

Writes are atomic: an entry is built in a temporary folder beside its final place and renamed into it only once
complete, so a half-written entry is never read back. A step that takes long can keep partial progress (say,
checkpoints) in a scratch folder under the same key, which survives an interruption and is removed when the entry
is committed: that is how an interrupted run resumes where it stopped.

The cache checks itself. The completion marker written last into an entry records every file's size and sha256;
an entry is verified when it is read, and one that does not verify (a truncated file, a missing marker, a changed
byte) is moved aside into `<root>/.quarantine/` (never deleted), a warning names its step, key and both places,
and it is recomputed. Temporary folders left by a killed process are removed once their owner is gone and they
are older than `CAPLAB_CACHE_TMP_HOURS` (default 6). Several processes may share a cache: an entry is built under
a per-entry file lock (the second process waits, then reads the first one's entry), and a complete entry that
another process committed is never replaced.

Values are stored in safe formats: a DataFrame as parquet, plain data (dicts, lists, strings, numbers) as JSON;
only what neither can hold is pickled, and its digest is checked before it is unpickled.

    cache = default_cache()
    table = cache.get_or_compute("sweep", {"sizes": [1, 2]}, lambda: run_sweep([1, 2]))
    path = cache.directory("pretrain", args, build=lambda tmp: train_and_save(tmp))
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import logging
import os
import pickle
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

try:
    import fcntl
except ImportError:            # not on POSIX: entries are still committed atomically, builds are not serialized
    fcntl = None

T = TypeVar("T")
log = logging.getLogger("caplab.cache")

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]
_DONE = "COMPLETE"          # marker written last inside an entry folder: JSON with each file's size and sha256
_ARGS = "args.json"
_VALUE_FILES = ("value.json", "value.parquet", "value.pkl")
_MARKER_FORMAT = 1
QUARANTINE = ".quarantine"  # damaged entries are moved here, never deleted
_IN_CACHE = "<cache>/"      # how an argument pointing inside the cache root appears in a key


# The layers whose code decides what an expensive step computes; the report layer, the runner and the CLI only
# present results, so editing them does not invalidate trained models.
_COMPUTING_LAYERS = ("substrate", "science", "stats")


@functools.lru_cache(maxsize=1)
def source_version() -> str:
    """Hash of every Python source file of the computing layers (`caplab.substrate`, `caplab.science`, `caplab.stats`): a change
    there recomputes every cached step."""
    digest = hashlib.sha256()
    for path in sorted(p for layer in _COMPUTING_LAYERS for p in (_PACKAGE_ROOT / layer).rglob("*.py")):
        digest.update(str(path.relative_to(_PACKAGE_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _canonical(value: Any) -> Any:
    """A JSON-able form of an argument value, stable across runs; rejects what cannot be keyed reliably."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__dataclass__": type(value).__name__, **_canonical(dataclasses.asdict(value))}
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and callable(value.item):      # numpy / torch scalars
        return value.item()
    raise TypeError(f"cache arguments must be JSON-like (dict, list, str, number, bool, None, dataclass); "
                    f"got {type(value).__name__}: {value!r:.80}")


def cache_key(step: str, args: dict[str, Any], version: str | None = None) -> str:
    payload = json.dumps({"step": step, "args": _canonical(args), "source": version or source_version()},
                         sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


# -- integrity ------------------------------------------------------------------------------------------------------
def file_digest(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file under `folder` but the marker: relative name -> size and sha256."""
    return {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": file_digest(p)}
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != _DONE}


def _read_marker(entry: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((entry / _DONE).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("format") == _MARKER_FORMAT else None


_VERIFIED: dict[str, tuple] = {}     # entry -> (name, size, mtime) of its files when it last verified in this process


def verify_entry(entry: Path) -> str | None:
    """None if the entry is complete and every file matches its recorded size and sha256, else what is wrong.
    Files unchanged (size, mtime) since they verified in this process are not hashed again."""
    if not (entry / _DONE).exists():
        return "no completion marker (a partial or damaged entry)"
    marker = _read_marker(entry)
    if marker is None:
        return "unreadable completion marker (damaged, or written by an older caplab)"
    files = marker.get("files", {})
    stats = []
    for name, want in files.items():
        path = entry / name
        if not path.is_file():
            return f"file {name} is missing"
        stat = path.stat()
        if stat.st_size != want["size"]:
            return f"file {name} is {stat.st_size} bytes, {want['size']} were written (truncated or changed)"
        stats.append((name, stat.st_size, stat.st_mtime_ns))
    if _VERIFIED.get(str(entry)) == tuple(stats):
        return None
    for name, want in files.items():
        if file_digest(entry / name) != want["sha256"]:
            return f"file {name} does not match its recorded sha256"
    _VERIFIED[str(entry)] = tuple(stats)
    return None


# -- temporary folders and their owners -----------------------------------------------------------------------------
_HOST = socket.gethostname().replace("/", "_")


def _tmp_name(final: Path) -> Path:
    return final.with_name(f"{final.name}.tmp-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _tmp_owner(tmp: Path) -> tuple[str, int] | None:
    """(host, pid) of the process that created a temporary folder, read from its name."""
    try:
        host, pid, _ = tmp.name.split(".tmp-", 1)[1].rsplit("-", 2)
        return host, int(pid)
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tmp_max_age_s() -> float:
    return float(os.environ.get("CAPLAB_CACHE_TMP_HOURS", "6")) * 3600


class Cache:
    """A folder of entries, `<root>/<step>/<key>/`, each holding `args.json`, the payload and a completion marker."""

    def __init__(self, root: str | os.PathLike, version: str | None = None, *, tmp_max_age_s: float | None = None):
        self.root = Path(root)
        self.version = version or source_version()
        self.tmp_max_age_s = _tmp_max_age_s() if tmp_max_age_s is None else tmp_max_age_s
        self.hits = 0
        self.misses = 0

    # -- locations ------------------------------------------------------------------------------------------
    def _check_step(self, step: str) -> None:
        if not step or "/" in step or step.startswith("."):
            raise ValueError(f"cache step name must be a plain name, got {step!r}")

    def portable_args(self, args: dict[str, Any]) -> Any:
        """The canonical arguments with every path inside the cache root written relative to it (`<cache>/...`):
        an upstream entry is then keyed by its own key, not by where the cache happens to live."""
        roots = sorted({os.path.abspath(self.root), os.path.realpath(self.root)}, key=len, reverse=True)

        def relative(value):
            if isinstance(value, dict):
                return {k: relative(v) for k, v in value.items()}
            if isinstance(value, list):
                return [relative(v) for v in value]
            if isinstance(value, str) and os.path.isabs(value):
                for root in roots:
                    if value.startswith(root + os.sep):
                        return _IN_CACHE + Path(value[len(root) + 1:]).as_posix()
            return value
        return relative(_canonical(args))

    def entry_path(self, step: str, args: dict[str, Any]) -> Path:
        self._check_step(step)
        return self.root / step / cache_key(step, self.portable_args(args), self.version)

    def scratch_path(self, step: str, args: dict[str, Any]) -> Path:
        """A persistent work folder for partial progress of this entry (kept across interruptions)."""
        path = self.entry_path(step, args)
        scratch = path.with_name(path.name + ".scratch")
        scratch.mkdir(parents=True, exist_ok=True)
        return scratch

    def contains(self, step: str, args: dict[str, Any]) -> bool:
        """Whether a complete entry that verifies exists (nothing is moved or computed)."""
        return verify_entry(self.entry_path(step, args)) is None

    # -- checking -------------------------------------------------------------------------------------------
    def _usable(self, final: Path, step: str) -> bool:
        """True for a complete entry that verifies; a damaged one is quarantined (and False returned)."""
        if not final.exists():
            return False
        reason = verify_entry(final)
        if reason is None:
            return True
        self.quarantine(final, step, reason)
        return False

    def quarantine(self, entry: Path, step: str, reason: str) -> Path | None:
        """Move a damaged entry aside into `<root>/.quarantine/<step>/` (never delete it), with a warning."""
        target = self.root / QUARANTINE / step / f"{entry.name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(entry, target)
        except FileNotFoundError:             # another process moved it first
            return None
        log.warning("cache: damaged entry step=%s key=%s (%s): moved %s -> %s; recomputing",
                    step, entry.name, reason, entry, target)
        return target

    def clean_stale_tmp(self, folder: Path) -> list[Path]:
        """Remove temporary folders under `folder` whose owner process is gone and that are older than
        `tmp_max_age_s`; a folder of another host is judged by its age alone."""
        removed = []
        now = time.time()
        for tmp in folder.glob("*.tmp-*"):
            owner = _tmp_owner(tmp)
            try:
                age = now - tmp.stat().st_mtime
            except FileNotFoundError:
                continue
            if age < self.tmp_max_age_s:
                continue
            if owner is not None and owner[0] == _HOST and pid_alive(owner[1]):
                continue
            shutil.rmtree(tmp, ignore_errors=True)
            log.warning("cache: removed stale temporary folder %s (owner %s gone, %.1f h old)", tmp,
                        f"pid {owner[1]} on {owner[0]}" if owner else "unknown", age / 3600)
            removed.append(tmp)
        return removed

    @contextlib.contextmanager
    def _building(self, final: Path) -> Iterator[None]:
        """Hold the entry's lock file while it is built: a second process building the same entry waits here,
        then finds the first one's entry. The kernel drops the lock if the holder dies."""
        if fcntl is None:
            yield
            return
        with open(final.with_name(final.name + ".lock"), "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.warning("cache: another process is building %s; waiting for it", final)
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- building -------------------------------------------------------------------------------------------
    def directory(self, step: str, args: dict[str, Any], build: Callable[[Path], None]) -> Path:
        """The folder of a complete entry; `build(tmp)` fills a temporary folder when the entry is missing."""
        final = self.entry_path(step, args)
        if self._usable(final, step):
            self.hits += 1
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        self.clean_stale_tmp(final.parent)
        with self._building(final):
            if self._usable(final, step):         # another process built it while this one waited
                self.hits += 1
                return final
            self.misses += 1
            tmp = _tmp_name(final)
            tmp.mkdir()
            try:
                (tmp / _ARGS).write_text(json.dumps({"step": step, "args": self.portable_args(args),
                                                     "source": self.version}, indent=1))
                build(tmp)
                (tmp / _DONE).write_text(json.dumps({"format": _MARKER_FORMAT, "files": _manifest(tmp)},
                                                    indent=1))
                self._commit(tmp, final, step)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        shutil.rmtree(final.with_name(final.name + ".scratch"), ignore_errors=True)
        return final

    def _commit(self, tmp: Path, final: Path, step: str) -> None:
        """Rename the finished temporary folder into place. If a folder is already there (another process that
        does not share the lock, say on another host), a complete one that verifies wins and ours is discarded;
        a damaged one is quarantined first."""
        for _ in range(3):
            try:
                os.rename(tmp, final)
                return
            except OSError:
                if not final.exists():
                    raise
            if verify_entry(final) is None:
                shutil.rmtree(tmp, ignore_errors=True)
                return
            self.quarantine(final, step, verify_entry(final) or "changed while committing")
        raise RuntimeError(f"could not commit cache entry {final}: another process keeps writing it")

    def get_or_compute(self, step: str, args: dict[str, Any], compute: Callable[[], T]) -> T:
        """The value of `compute()` for these arguments, computed once (stored as parquet, JSON or, for what
        neither holds, a pickle) and read back from the entry, also the first time."""
        def build(tmp: Path) -> None:
            name, data = encode_value(compute())
            (tmp / name).write_bytes(data)

        path = self.directory(step, args, build)
        marker = _read_marker(path) or {}
        for name in _VALUE_FILES:
            if (path / name).exists():
                data = (path / name).read_bytes()
                want = marker.get("files", {}).get(name, {}).get("sha256")
                if hashlib.sha256(data).hexdigest() != want:     # checked on the very bytes that are decoded
                    self.quarantine(path, step, f"file {name} does not match its recorded sha256")
                    return self.get_or_compute(step, args, compute)
                return decode_value(name, data)
        raise FileNotFoundError(f"cache entry {path} holds no value file ({', '.join(_VALUE_FILES)})")

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# -- values ---------------------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """`value` as plain JSON data (numpy scalars become numbers), or raise TypeError: dict keys must be strings and
    tuples are refused, since JSON would silently give them back as other types."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    if type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():
        return _plain(value.item())
    raise TypeError(type(value).__name__)


def encode_value(value: Any) -> tuple[str, bytes]:
    """(file name, bytes) of a cached value: parquet for a DataFrame that round-trips exactly, JSON for plain data,
    else a pickle."""
    import pandas as pd
    if isinstance(value, pd.DataFrame):
        try:
            buffer = io.BytesIO()
            value.to_parquet(buffer)
            if pd.read_parquet(io.BytesIO(buffer.getvalue())).equals(value):
                return "value.parquet", buffer.getvalue()
        except (ImportError, ValueError, TypeError):
            pass                              # non-string column names, mixed object columns: pickled below
    else:
        try:
            return "value.json", json.dumps(_plain(value)).encode()
        except TypeError:
            pass
    # Pickle remains only for values no safe format holds (tuples, arrays, frames parquet cannot round-trip,
    # custom objects): there is no general safe serializer for arbitrary Python objects. Unpickling runs code, so
    # `get_or_compute` checks the bytes against the digest in the entry's marker before `decode_value` sees them;
    # that catches damage, not a hostile writer: keep a cache writable only by those whose code you would run.
    return "value.pkl", pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def decode_value(name: str, data: bytes) -> Any:
    if name == "value.json":
        return json.loads(data)
    if name == "value.parquet":
        import pandas as pd
        return pd.read_parquet(io.BytesIO(data))
    return pickle.loads(data)                 # digest verified by the caller (see encode_value)


def default_root() -> Path:
    """`$CAPLAB_CACHE`, else `.cache/caplab` in the repository (outside results/, removed by `make distclean`)."""
    env = os.environ.get("CAPLAB_CACHE")
    if env:
        return Path(env)
    from caplab.paths import repo_root
    return repo_root() / ".cache" / "caplab"


def default_cache() -> Cache:
    return Cache(default_root())


def _umask() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)                    # no /proc: read it by setting it (and put it back at once)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file so that readers see the old content or the new one, never a half-written file. The file
    gets the mode a plain `open` would give it (0644 under the usual umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
