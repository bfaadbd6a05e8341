"""The suite's figure style: one seaborn theme, figures saved as PNG and SVG beside the report."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import seaborn as sns

PALETTE = "colorblind"


def theme() -> None:
    """Apply the caplab theme (call once per notebook; `Report` does it)."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE,
                  rc={"figure.figsize": (6.4, 4.0), "figure.dpi": 100, "savefig.dpi": 150,
                      "axes.titleweight": "bold", "svg.fonttype": "none"})


def save(fig: "matplotlib.figure.Figure", folder: Path, name: str) -> list[Path]:
    """Write `name.png` and `name.svg` into `folder`; returns the paths."""
    if not name or "/" in name:
        raise ValueError(f"figure name must be a plain file stem, got {name!r}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.svg"]
    for path in paths:
        fig.savefig(path, bbox_inches="tight")
    return paths
