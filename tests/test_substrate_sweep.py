"""The sweep runner: forked single-thread children fill the cache, the parent reads it back; the result equals the
plain loop's (tests run one torch thread per process, as the children do)."""
import pytest
import torch

from caplab.substrate import data, sweep
from caplab.substrate.cache import Cache
from caplab.substrate.family import train_family
from caplab.substrate.models import load_local, tiny_model
from caplab.substrate.train import train_cached

SHAPES = [{"name": "a", "d_model": 32, "n_layer": 1, "n_head": 1},
          {"name": "b", "d_model": 64, "n_layer": 1, "n_head": 2, "seed": 3}]
CONFIG = {"batch_size": 2, "lr": 3e-3, "warmup_steps": 2}


@pytest.fixture(scope="module")
def corpus():
    return data.pack_blocks(data.zipf_language(200, vocab_size=40, seed=0), tiny_model("0.1M")[1], 16)


def _weights(path):
    model, _ = load_local(path)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_family_trained_in_children_equals_the_plain_loop(corpus, tmp_path, monkeypatch):
    frames = {}
    caches = {}
    for n in (1, 2):
        monkeypatch.setenv(sweep.WORKERS_ENV, str(n))
        caches[n] = Cache(tmp_path / f"cache{n}")
        frames[n] = train_family(SHAPES, corpus, CONFIG, [32, 96, 160], cache=caches[n])
    # with two workers the children trained both members: the parent only read entries back
    assert (caches[2].misses, caches[2].hits) == (0, 2)
    assert (caches[1].misses, caches[1].hits) == (2, 0)
    assert frames[1].drop(columns="path").equals(frames[2].drop(columns="path"))
    for one, two in zip(frames[1].path, frames[2].path):
        a, b = _weights(one), _weights(two)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_a_failing_child_surfaces_as_the_parents_own_error(tmp_path):
    cache = Cache(tmp_path / "cache")

    def good():
        return cache.get_or_compute("t", {"x": 1}, lambda: {"value": 1})

    def bad():
        raise RuntimeError("the real error")

    with pytest.raises(RuntimeError, match="the real error"):
        sweep.parallel([good, bad], n_workers=2)
    assert cache.misses == 0 and cache.hits == 1       # the child computed `good`, the parent read it back


def test_plain_loop_when_one_worker_and_results_in_order(tmp_path):
    assert sweep.parallel([lambda i=i: i * i for i in range(5)], n_workers=1) == [0, 1, 4, 9, 16]
    assert sweep.parallel([lambda i=i: i for i in range(4)], n_workers=2, costs=[1, 9, 3, 2]) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="costs"):
        sweep.parallel([lambda: 1], costs=[1, 2])
    with pytest.raises(ValueError, match="n_workers"):
        sweep.parallel([lambda: 1], n_workers=0)


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_workers_env_rejects_bad_values(monkeypatch, value):
    monkeypatch.setenv(sweep.WORKERS_ENV, value)
    with pytest.raises(ValueError, match="CAPLAB_WORKERS"):
        sweep.workers()


def test_train_cached_in_a_child_resumes_nothing_lost(corpus, tmp_path):
    """The parent's call after the children is a cache hit returning the same run object contents."""
    cache = Cache(tmp_path / "cache")
    spec = {k: v for k, v in SHAPES[0].items() if k != "name"}
    config = {**CONFIG, "steps": 4}
    runs = sweep.parallel([lambda: train_cached(spec, corpus, config, cache=cache),
                           lambda: train_cached({**spec, "seed": 1}, corpus, config, cache=cache)], n_workers=2)
    assert cache.misses == 0 and len(runs) == 2
    assert runs[0].summary["steps"] == runs[1].summary["steps"] == 4
    assert not torch.equal(next(iter(_weights(runs[0].path / "model").values())),
                           next(iter(_weights(runs[1].path / "model").values())))


def test_is_trained_tells_a_cached_run_before_training(corpus, tmp_path):
    from caplab.substrate.train import is_trained
    cache = Cache(tmp_path / "cache")
    spec = {k: v for k, v in SHAPES[0].items() if k != "name"}
    config = {**CONFIG, "steps": 2}
    assert not is_trained(spec, corpus, config, cache=cache)
    train_cached(spec, corpus, config, cache=cache)
    assert is_trained(spec, corpus, config, cache=cache)
    assert not is_trained(spec, corpus, {**config, "steps": 3}, cache=cache)
    assert not is_trained(spec, corpus, config, cache=cache, step="teacher")


def test_interrupting_the_parent_stops_its_children(tmp_path):
    """Ctrl-C while children train: the parent raises KeyboardInterrupt at once and no child is left running."""
    import multiprocessing
    import os
    import signal
    import threading
    import time

    cache = Cache(tmp_path / "cache")

    def slow(i):
        return lambda: cache.get_or_compute("slow", {"i": i}, lambda: time.sleep(60) or {"i": i})

    threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT)).start()    # as a terminal's Ctrl-C
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        sweep.parallel([slow(i) for i in range(3)], n_workers=2)
    assert time.perf_counter() - started < 20
    assert multiprocessing.active_children() == []
    assert not any(cache.contains("slow", {"i": i}) for i in range(3))


def test_children_draw_their_own_dataset_fingerprints(tmp_path):
    """`datasets` gives a dataset whose transform it cannot hash a random fingerprint, and names its cache files by
    it; forked children must not repeat the parent's draws (budget's DPO runs once read another run's cached
    reference log-probs)."""
    from datasets import fingerprint
    cache = Cache(tmp_path / "cache")

    def draw(i):
        return cache.get_or_compute("fp", {"i": i}, lambda: {"fp": fingerprint.generate_random_fingerprint()})

    found = sweep.parallel([lambda i=i: draw(i)["fp"] for i in range(2)], n_workers=2)
    found.append(fingerprint.generate_random_fingerprint())             # the parent's own next draw
    assert cache.misses == 0 and len(set(found)) == 3
