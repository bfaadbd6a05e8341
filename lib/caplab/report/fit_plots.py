"""Figures of a fitted law: data with fitted curves, residuals, observed against predicted (matplotlib axes)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from caplab.stats.fitting import Fit


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt
        ax = plt.gca()
    return ax


def _frame(fit: Fit, frame):
    """The frame to plot: the given one, or the fitted data rebuilt with the frame's column names."""
    if frame is not None:
        return frame
    data = {column: fit.x[name] for name, column in fit.inputs.items()}
    return pd.DataFrame({**data, fit.target: fit.y})


def plot_fit(fit: Fit, frame: pd.DataFrame | None = None, x: str | None = None, hue: str | None = None, ax=None,
             points: int = 100):
    """Observed target against input `x` (default the law's first input), one colour per value of `hue` (default
    the second input, if any), with the fitted curve over each group's range of x (other inputs at the group's
    first row). Log axes where the values are positive."""
    ax = _axes(ax)
    frame = _frame(fit, frame)
    x = x or fit.law.inputs[0]
    if x not in fit.inputs:
        raise ValueError(f"x must be one of the law's inputs {list(fit.inputs)}, got {x!r}")
    hue = hue if hue is not None else (fit.law.inputs[1] if len(fit.law.inputs) > 1 else None)
    groups = frame.groupby(fit.inputs[hue]) if hue else [(None, frame)]
    colours = iter(__import__("matplotlib").colormaps["viridis"](np.linspace(0, 0.9, max(len(groups), 1))))
    for value, group in groups:
        colour = next(colours)
        label = None if hue is None else f"{hue} = {value:.3g}"
        ax.scatter(group[fit.inputs[x]], group[fit.target], s=12, color=colour, label=label)
        column = group[fit.inputs[x]].to_numpy(dtype=float)
        grid = (np.geomspace if column.min() > 0 else np.linspace)(column.min(), column.max(), points)
        inputs = {name: np.full(points, float(group[col].iloc[0])) for name, col in fit.inputs.items()}
        inputs[x] = grid
        ax.plot(grid, fit.law.predict(fit.params, inputs), color=colour, lw=1)
    if (frame[fit.inputs[x]] > 0).all():
        ax.set_xscale("log")
    if (frame[fit.target] > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel(fit.inputs[x])
    ax.set_ylabel(fit.target)
    ax.set_title(fit.law.name)
    if hue:
        ax.legend(fontsize="small")
    return ax


def plot_residuals(fit: Fit, frame: pd.DataFrame | None = None, x: str | None = None, ax=None,
                   space: str | None = None):
    """Residuals (observed - predicted, in `space`, default the law's) against input `x` or, by default, against
    the prediction, with a zero line."""
    ax = _axes(ax)
    frame = _frame(fit, frame)
    residuals = fit.residuals(frame, space)
    if x is None:
        along, label = fit.predict(frame), f"predicted {fit.target}"
    else:
        if x not in fit.inputs:
            raise ValueError(f"x must be one of the law's inputs {list(fit.inputs)}, got {x!r}")
        along, label = frame[fit.inputs[x]].to_numpy(), fit.inputs[x]
    ax.scatter(along, residuals, s=12)
    ax.axhline(0.0, color="grey", lw=1)
    if np.all(along > 0):
        ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel(f"{space or fit.law.space} residual")
    ax.set_title(f"{fit.law.name}: residuals")
    return ax


def plot_observed_predicted(fit: Fit, frame: pd.DataFrame | None = None, ax=None):
    """Observed against predicted target with the identity line."""
    ax = _axes(ax)
    frame = _frame(fit, frame)
    observed, predicted = frame[fit.target].to_numpy(), fit.predict(frame)
    ax.scatter(predicted, observed, s=12)
    low, high = min(observed.min(), predicted.min()), max(observed.max(), predicted.max())
    ax.plot([low, high], [low, high], color="grey", lw=1)
    ax.set_xlabel(f"predicted {fit.target}")
    ax.set_ylabel(f"observed {fit.target}")
    ax.set_title(f"{fit.law.name}: R2 = {fit.r2(frame):.3f} ({fit.law.space})")
    return ax
