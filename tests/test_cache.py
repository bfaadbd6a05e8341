"""The cache: same arguments are not recomputed, changed ones are, an interrupted write is never read back."""
import json

import pytest

from caplab.substrate.cache import Cache, atomic_write_text, cache_key


class Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self, value):
        def compute():
            self.calls += 1
            return {"value": value, "call": self.calls}
        return compute


def test_same_arguments_do_not_recompute(tmp_path):
    cache, count = Cache(tmp_path, version="v1"), Counter()
    first = cache.get_or_compute("step", {"n": 3, "names": ["a", "b"]}, count(3))
    again = cache.get_or_compute("step", {"names": ["a", "b"], "n": 3}, count(3))
    assert count.calls == 1 and first == again and cache.hits == 1
    # a fresh Cache object on the same folder (a new process) reads the entry back too
    assert Cache(tmp_path, version="v1").get_or_compute("step", {"n": 3, "names": ["a", "b"]}, count(3)) == first
    assert count.calls == 1


def test_changed_argument_or_library_recomputes(tmp_path):
    count = Counter()
    Cache(tmp_path, version="v1").get_or_compute("step", {"n": 3}, count(3))
    Cache(tmp_path, version="v1").get_or_compute("step", {"n": 4}, count(4))
    Cache(tmp_path, version="v2").get_or_compute("step", {"n": 3}, count(3))
    assert count.calls == 3
    assert cache_key("s", {"n": 3}, "v1") != cache_key("s", {"n": 3.5}, "v1")


def test_interrupted_write_leaves_nothing_that_is_read_back(tmp_path):
    cache, count = Cache(tmp_path, version="v1"), Counter()

    def build(tmp):
        (tmp / "half.bin").write_bytes(b"partial")
        raise KeyboardInterrupt          # the user pressed ctrl-C mid-write

    with pytest.raises(KeyboardInterrupt):
        cache.directory("train", {"n": 1}, build)
    assert not cache.contains("train", {"n": 1})
    assert not list((tmp_path / "train").glob("*.tmp-*"))
    # a folder left by a killed process (no completion marker) is not taken for an entry
    cache.entry_path("train", {"n": 2}).mkdir(parents=True)
    (cache.entry_path("train", {"n": 2}) / "value.pkl").write_bytes(b"garbage")
    assert cache.get_or_compute("train", {"n": 2}, count(2)) == {"value": 2, "call": 1}


def test_scratch_survives_until_the_entry_is_committed(tmp_path):
    cache = Cache(tmp_path, version="v1")
    scratch = cache.scratch_path("train", {"n": 1})
    (scratch / "checkpoint").write_text("step 10")
    assert cache.scratch_path("train", {"n": 1}).joinpath("checkpoint").read_text() == "step 10"
    cache.directory("train", {"n": 1}, lambda tmp: (tmp / "model").write_text("done"))
    assert not scratch.exists()


def test_unkeyable_arguments_are_rejected_before_compute(tmp_path):
    count = Counter()
    with pytest.raises(TypeError, match="JSON-like"):
        Cache(tmp_path).get_or_compute("step", {"f": object()}, count(1))
    assert count.calls == 0


def test_atomic_write_keeps_old_content_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "claims.json"
    atomic_write_text(path, json.dumps({"v": 1}))

    import os
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        atomic_write_text(path, json.dumps({"v": 2}))
    monkeypatch.setattr(os, "replace", real_replace)
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["claims.json"]


def test_source_version_changes_with_computing_code_not_with_the_report(tmp_path, monkeypatch):
    from caplab.substrate import cache as cache_module
    for layer in ("substrate", "science", "report"):
        (tmp_path / layer).mkdir()
        (tmp_path / layer / "m.py").write_text("x = 1\n")
    monkeypatch.setattr(cache_module, "_PACKAGE_ROOT", tmp_path)

    def version():
        cache_module.source_version.cache_clear()
        return cache_module.source_version()

    first = version()
    (tmp_path / "report" / "m.py").write_text("x = 2\n")
    assert version() == first
    (tmp_path / "science" / "m.py").write_text("x = 2\n")
    assert version() != first
    cache_module.source_version.cache_clear()


# -- an entry that checks itself -----------------------------------------------------------------------------------
def _write_safetensors(path):
    import torch
    from safetensors.torch import save_file
    save_file({"w": torch.arange(256, dtype=torch.float32).reshape(16, 16)}, str(path))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF                     # same size: only the digest can tell
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, name", [
    ("truncated safetensors", "model.safetensors"),
    ("truncated value file", "value.json"),
    ("missing marker", "COMPLETE"),
    ("digest mismatch", "value.json"),
])
def test_damaged_entry_is_quarantined_and_recomputed(tmp_path, caplog, damage, name):
    cache, count = Cache(tmp_path, version="v1"), Counter()
    if name == "model.safetensors":
        def build(tmp):
            count.calls += 1
            _write_safetensors(tmp / "model.safetensors")
        entry = cache.directory("train", {"n": 1}, build)
    else:
        assert cache.get_or_compute("sweep", {"n": 1}, count(1)) == {"value": 1, "call": 1}
        entry = cache.entry_path("sweep", {"n": 1})
    target = entry / name
    {"truncated safetensors": _truncate, "truncated value file": _truncate,
     "missing marker": lambda p: p.unlink(), "digest mismatch": _flip_last_byte}[damage](target)
    damaged = None if damage == "missing marker" else target.read_bytes()
    fresh = Cache(tmp_path, version="v1")              # a new process: nothing verified yet
    with caplog.at_level("WARNING", logger="caplab.cache"):
        if name == "model.safetensors":
            again = fresh.directory("train", {"n": 1}, build)
            from safetensors.torch import load_file
            assert load_file(str(again / "model.safetensors"))["w"].sum().item() == sum(range(256))
        else:
            assert fresh.get_or_compute("sweep", {"n": 1}, count(1)) == {"value": 1, "call": 2}
    assert count.calls == 2 and fresh.misses == 1
    step = "train" if name == "model.safetensors" else "sweep"
    [moved] = (tmp_path / ".quarantine" / step).iterdir()          # moved aside, not deleted
    assert moved.name.startswith(entry.name)
    if damaged is not None:
        assert (moved / name).read_bytes() == damaged != target.read_bytes()
    [line] = [r.getMessage() for r in caplog.records if "damaged entry" in r.getMessage()]
    assert f"step={step}" in line and f"key={entry.name}" in line and str(entry) in line and str(moved) in line
    assert cache.contains(step, {"n": 1})


def test_damage_after_a_read_in_the_same_process_is_still_found(tmp_path):
    cache, count = Cache(tmp_path, version="v1"), Counter()
    cache.get_or_compute("sweep", {"n": 1}, count(1))
    cache.get_or_compute("sweep", {"n": 1}, count(1))            # verified and remembered
    _truncate(cache.entry_path("sweep", {"n": 1}) / "value.json")
    assert cache.get_or_compute("sweep", {"n": 1}, count(1)) == {"value": 1, "call": 2}


def test_stale_temporary_folders_are_removed_live_or_young_ones_kept(tmp_path):
    import os
    import socket
    import time
    cache = Cache(tmp_path, version="v1", tmp_max_age_s=3600)
    final = cache.entry_path("train", {"n": 1})
    final.parent.mkdir(parents=True)
    host = socket.gethostname()
    dead = final.with_name(f"{final.name}.tmp-{host}-999999999-aaaa0000")
    live = final.with_name(f"{final.name}.tmp-{host}-{os.getpid()}-bbbb0000")
    young = final.with_name(f"other.tmp-{host}-999999998-cccc0000")
    for folder in (dead, live, young):
        folder.mkdir()
        (folder / "half.bin").write_bytes(b"partial")
    old = time.time() - 7200
    for folder in (dead, live):
        os.utime(folder, (old, old))
    cache.directory("train", {"n": 1}, lambda tmp: (tmp / "model").write_text("done"))
    assert not dead.exists() and live.exists() and young.exists()


def test_a_moved_cache_is_reused_without_recomputing(tmp_path):
    import shutil
    count = Counter()

    def steps(cache, fail=False):
        def build(tmp):
            assert not fail, "recomputed the upstream entry"
            (tmp / "model").mkdir()
            (tmp / "model" / "weights.bin").write_bytes(b"w" * 100)
        upstream = cache.directory("pretrain", {"size": 1}, build)
        # the downstream step is keyed by the upstream entry's folder, an absolute path inside the cache
        return cache.get_or_compute("finetune", {"base": {"path": str(upstream / "model")}, "lr": 0.1},
                                    count("tuned"))

    first = steps(Cache(tmp_path / "a", version="v1"))
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "b")
    moved = Cache(tmp_path / "elsewhere" / "b", version="v1")
    assert steps(moved, fail=True) == first and count.calls == 1 and moved.hits == 2
    args = json.loads(next((tmp_path / "a" / "finetune").glob("*/args.json")).read_text())
    assert args["args"]["base"]["path"].startswith("<cache>/pretrain/")


def test_a_complete_entry_of_another_process_is_never_replaced(tmp_path):
    cache, other = Cache(tmp_path, version="v1"), Cache(tmp_path, version="v1")

    def build(tmp):            # while this build runs, another process (no shared lock: another host) commits
        other._commit(_prepared(tmp_path, other, "theirs"), other.entry_path("train", {"n": 1}), "train")
        (tmp / "model").write_text("ours")

    entry = cache.directory("train", {"n": 1}, build)
    assert (entry / "model").read_text() == "theirs" and not list(entry.parent.glob("*.tmp-*"))


def _prepared(tmp_path, cache, text):
    """A finished temporary folder of `cache`'s entry train/{n: 1}, marker included."""
    from caplab.substrate import cache as cache_module
    tmp = tmp_path / "train" / f"theirs.tmp-elsewhere-1-00000000"
    tmp.mkdir(parents=True)
    (tmp / "model").write_text(text)
    (tmp / "COMPLETE").write_text(json.dumps({"format": 1, "files": cache_module._manifest(tmp)}))
    return tmp


def test_two_builders_of_one_entry_compute_it_once(tmp_path):
    import threading
    import time
    count = Counter()

    def slow(value):
        inner = count(value)

        def compute():
            time.sleep(0.5)
            return inner()
        return compute

    results = []
    workers = [threading.Thread(target=lambda: results.append(
        Cache(tmp_path, version="v1").get_or_compute("sweep", {"n": 1}, slow(1)))) for _ in range(2)]
    for w in workers:
        w.start()
        time.sleep(0.1)
    for w in workers:
        w.join()
    assert count.calls == 1 and results == [{"value": 1, "call": 1}] * 2


def test_values_are_stored_in_safe_formats_and_a_changed_pickle_is_not_loaded(tmp_path):
    import pickle

    import pandas as pd
    cache = Cache(tmp_path, version="v1")
    frame = pd.DataFrame({"arm": ["a", "b"], "seed": [0, 1], "loss": [0.5, float("nan")]})
    assert cache.get_or_compute("frame", {}, lambda: frame).equals(frame)
    assert (cache.entry_path("frame", {}) / "value.parquet").exists()
    assert cache.get_or_compute("plain", {}, lambda: [{"a": 1.5, "b": None}]) == [{"a": 1.5, "b": None}]
    assert (cache.entry_path("plain", {}) / "value.json").exists()
    assert cache.get_or_compute("other", {}, lambda: (1, 2)) == (1, 2)           # tuples: JSON would give a list
    pkl = cache.entry_path("other", {}) / "value.pkl"

    class Planted:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))
    pkl.write_bytes(pickle.dumps(Planted()))
    assert Cache(tmp_path, version="v1").get_or_compute("other", {}, lambda: (1, 2)) == (1, 2)
    assert not (tmp_path / "pwned").exists()


def test_atomic_write_respects_the_umask(tmp_path):
    import os
    previous = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.json", "{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600
