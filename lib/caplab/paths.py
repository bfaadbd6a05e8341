"""Where things live: the repository, its notebooks, results and cache."""
from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The checkout caplab runs from: `$CAPLAB_ROOT`, else the folder above `lib/` holding pyproject.toml."""
    env = os.environ.get("CAPLAB_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "lib" / "caplab").is_dir():
            return parent
    return Path.cwd()


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def results_dir() -> Path:
    return Path(os.environ.get("CAPLAB_RESULTS", repo_root() / "results"))
