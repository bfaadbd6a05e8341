"""Test-wide settings: offline hub (a hub call here hangs ~50 s), a private cache, the fixture notebooks."""
import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
# One thread per process (the notebooks' kernels inherit it): a tiny model's step is faster so on a shared machine,
# pytest-xdist workers do not oversubscribe the cores, and the smoke metrics (tests/fixtures/smoke_metrics.json)
# are the same whatever the machine's core count (floating-point sums differ with the thread count).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
# One process per test: pytest-xdist already runs a test on every core, so a notebook's sweep (caplab.substrate.sweep)
# runs its cached steps in the test's own process. Forked children would oversubscribe the cores and each import
# again what the parent had not (TRL: about 20 s of CPU for the budget and rl_scaling smoke notebooks together).
# The tests of the sweep itself name their worker counts.
os.environ.setdefault("CAPLAB_WORKERS", "1")

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"
sys.path.insert(0, str(Path(__file__).parent))        # tests/standin_hub.py
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(FIXTURES))

import signal  # noqa: E402

import pytest  # noqa: E402

# pytest-xdist workers start with Ctrl-C ignored, and children inherit that: the fault tests send SIGINT to the
# runner (in process and to a child's process group) and expect what a terminal's Ctrl-C does.
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache folder, so no test reads another's entries."""
    monkeypatch.setenv("CAPLAB_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def standin_hub(tmp_path_factory):
    """One stand-in Hugging Face hub per test process (tests/standin_hub.py); stand-ins are laid out on demand with
    `provide_for(params)`. Use `standin_env` to point the environment at it."""
    from standin_hub import StandinHub
    return StandinHub(tmp_path_factory.mktemp("standin-hf"))


@pytest.fixture
def standin_env(standin_hub, monkeypatch):
    """The environment of an offline run against the stand-in hub (HF_HOME, HF_HUB_CACHE, HF_DATASETS_CACHE)."""
    for key, value in standin_hub.env().items():
        monkeypatch.setenv(key, value)
    return standin_hub


# The slowest tests (whole notebooks, then the controls' replays) first: pytest-xdist then ends on short tests on
# every worker instead of one worker finishing a long notebook alone.
_FIRST = ("test_gpu_standin.py", "test_notebooks.py", "test_controls.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        name = item.nodeid.split("::")[0].rsplit("/", 1)[-1]
        return _FIRST.index(name) if name in _FIRST else len(_FIRST)
    items.sort(key=rank)
