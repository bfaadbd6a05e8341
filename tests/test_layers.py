"""The library's layers import only downwards, and nothing outside the hashed layers computes a cached step."""
import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib" / "caplab"
# a layer may import the layers listed after it (and itself); `params` and `paths` are below everything
ORDER = ["controls", "report", "papers", "science", "stats", "substrate"]
BASE = {"params", "paths"}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("caplab"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("caplab"))
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


@pytest.mark.parametrize("layer", ORDER)
def test_layers_import_only_downwards(layer):
    allowed = set(ORDER[ORDER.index(layer):]) | BASE
    if layer == "stats":
        allowed -= {"substrate"}            # the toolkit stands alone
    bad = []
    for path in sorted((LIB / layer).rglob("*.py")):
        for module in _imports(path):
            target = _layer(module)
            if target in ORDER + list(BASE) and target not in allowed:
                bad.append(f"{path.relative_to(LIB)} imports {module}")
    assert not bad, bad


def test_params_imports_nothing_from_caplab():
    assert not _imports(LIB / "params.py")


def test_paper_modules_cache_nothing_themselves():
    """Paper modules are outside the cache key's hashed code: a cached step defined there would be read back
    stale after an edit. They may call cached steps of science/substrate, never the cache itself."""
    for path in sorted((LIB / "papers").glob("*.py")):
        assert not any("cache" in m for m in _imports(path)), path.name
        assert "get_or_compute" not in path.read_text() and "for_each_checkpoint" not in path.read_text(), path.name


def test_plots_and_papers_are_outside_the_cache_key():
    from caplab.substrate import cache
    assert set(cache._COMPUTING_LAYERS) == {"substrate", "science", "stats"}
    assert not list((LIB / "science").glob("*plot*")) and not list((LIB / "stats").glob("*plot*"))
