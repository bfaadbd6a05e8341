"""Provenance: what a result was computed from and on (code version, packages, machine, seeds, parameters, times)."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

PACKAGES = ("caplab", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers", "numpy",
            "pandas", "scipy", "statsmodels", "seaborn", "matplotlib", "papermill", "nbconvert", "ipykernel")


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_state(root: Path) -> dict[str, Any]:
    """The commit and whether the work tree differs from it; `None`s outside a git checkout."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": None if sha is None else bool(status)}


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_model() -> str | None:
    try:
        import torch
        if torch.cuda.is_available():
            return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except Exception:  # torch missing or a broken driver: report no GPU rather than fail a report
        return None
    return None


def torch_threads() -> int | None:
    """Intra-op threads of torch in this process: results differ in the last bits with the thread count, so the
    same seed gives the same metrics only at the same count."""
    import sys as _sys
    torch = _sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _workers() -> int | None:
    """Processes that train independent runs side by side (`caplab.substrate.sweep`; each child on one thread)."""
    try:
        from caplab.substrate.sweep import workers
        return workers()
    except (ImportError, ValueError):
        return None


def seeds_of(params) -> dict[str, Any]:
    """Every seed at any depth (keys named `seed`, `seeds`, `*_seed`, `*_seeds`), by dotted path."""
    from caplab.params import seeds
    return seeds(params)


def collect(*, notebook: str, tier: str, params, started: str, ended: str | None,
            wall_s: float | None) -> dict[str, Any]:
    from caplab.params import as_dict
    from caplab.paths import repo_root
    return {
        "notebook": notebook,
        "tier": tier,
        "params": as_dict(params) if dataclasses.is_dataclass(params) else params,
        "seeds": seeds_of(params),
        "git": git_state(repo_root()),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "os": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch_threads(),
        "workers": _workers(),
        "gpu": gpu_model(),
        "started": started,
        "ended": ended,
        "wall_s": None if wall_s is None else round(wall_s, 2),
    }
