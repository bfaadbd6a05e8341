"""The on-disk cache of expensive steps (training runs, sweeps, evaluations).

An entry's key is made of the step's name, its resolved arguments (canonical JSON) and the source version of
the library's computing layers (substrate and science), so a rerun of an unchanged notebook reads its entries
back and a change to the computing code recomputes them.
Writes are atomic: an entry is built in a temporary folder beside its final place and renamed into it only once
complete, so a half-written entry is never read back. A step that takes long can keep partial progress (say,
checkpoints) in a scratch folder under the same key, which survives an interruption and is removed when the entry
is committed: that is how an interrupted run resumes where it stopped.

    cache = default_cache()
    table = cache.get_or_compute("sweep", {"sizes": [1, 2]}, lambda: run_sweep([1, 2]))
    path = cache.directory("pretrain", args, build=lambda tmp: train_and_save(tmp))
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pickle
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]
_DONE = "COMPLETE"          # marker written last inside an entry folder
_VALUE = "value.pkl"
_ARGS = "args.json"


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


class Cache:
    """A folder of entries, `<root>/<step>/<key>/`, each holding `args.json`, the payload and a completion marker."""

    def __init__(self, root: str | os.PathLike, version: str | None = None):
        self.root = Path(root)
        self.version = version or source_version()
        self.hits = 0
        self.misses = 0

    # -- locations ------------------------------------------------------------------------------------------
    def _check_step(self, step: str) -> None:
        if not step or "/" in step or step.startswith("."):
            raise ValueError(f"cache step name must be a plain name, got {step!r}")

    def entry_path(self, step: str, args: dict[str, Any]) -> Path:
        self._check_step(step)
        return self.root / step / cache_key(step, args, self.version)

    def scratch_path(self, step: str, args: dict[str, Any]) -> Path:
        """A persistent work folder for partial progress of this entry (kept across interruptions)."""
        path = self.entry_path(step, args)
        scratch = path.with_name(path.name + ".scratch")
        scratch.mkdir(parents=True, exist_ok=True)
        return scratch

    def contains(self, step: str, args: dict[str, Any]) -> bool:
        return (self.entry_path(step, args) / _DONE).exists()

    # -- building -------------------------------------------------------------------------------------------
    def directory(self, step: str, args: dict[str, Any], build: Callable[[Path], None]) -> Path:
        """The folder of a complete entry; `build(tmp)` fills a temporary folder when the entry is missing."""
        final = self.entry_path(step, args)
        if (final / _DONE).exists():
            self.hits += 1
            return final
        self.misses += 1
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f"{final.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        try:
            (tmp / _ARGS).write_text(json.dumps({"step": step, "args": _canonical(args),
                                                 "source": self.version}, indent=1))
            build(tmp)
            (tmp / _DONE).write_text("ok\n")
            if final.exists():                    # an incomplete leftover: never read, safe to replace
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(final.with_name(final.name + ".scratch"), ignore_errors=True)
        return final

    def get_or_compute(self, step: str, args: dict[str, Any], compute: Callable[[], T]) -> T:
        """The pickled value of `compute()` for these arguments, computed once."""
        def build(tmp: Path) -> None:
            with open(tmp / _VALUE, "wb") as fh:
                pickle.dump(compute(), fh, protocol=pickle.HIGHEST_PROTOCOL)

        path = self.directory(step, args, build)
        with open(path / _VALUE, "rb") as fh:
            return pickle.load(fh)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def default_root() -> Path:
    """`$CAPLAB_CACHE`, else `.cache/caplab` in the repository (outside results/, removed by `make distclean`)."""
    env = os.environ.get("CAPLAB_CACHE")
    if env:
        return Path(env)
    from caplab.paths import repo_root
    return repo_root() / ".cache" / "caplab"


def default_cache() -> Cache:
    return Cache(default_root())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file so that readers see the old content or the new one, never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
