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
