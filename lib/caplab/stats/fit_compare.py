"""Honest comparison of fitted laws: extrapolation splits and one table per set of laws (FITTING.md items 6-7).

A split rule chooses the training rows; the rest are held out. Rules: a callable frame -> boolean mask, a
`DataFrame.eval` string ("params <= 1e7 and tokens <= 1e9"), a boolean array, or the helpers `upto` and
`hold_out_largest`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from caplab.stats.fitting import Fit, fit_law, information_criteria
from caplab.stats.laws import Law


def upto(**limits: float) -> Callable[[pd.DataFrame], np.ndarray]:
    """Rule: train on rows where every named column is <= its limit, e.g. upto(params=1e7, tokens=1e9)."""
    def rule(frame):
        _check_columns(frame, limits)
        return np.logical_and.reduce([frame[c].to_numpy() <= v for c, v in limits.items()])
    rule.__doc__ = "train where " + " and ".join(f"{c} <= {v:g}" for c, v in limits.items())
    return rule


def hold_out_largest(column: str, count: int = 1) -> Callable[[pd.DataFrame], np.ndarray]:
    """Rule: hold out the rows whose `column` is among its `count` largest distinct values (say, the largest model)."""
    def rule(frame):
        _check_columns(frame, [column])
        values = np.unique(frame[column].to_numpy())
        if count >= len(values):
            raise ValueError(f"hold_out_largest: {column!r} has only {len(values)} distinct values")
        return frame[column].to_numpy() < values[-count]
    rule.__doc__ = f"hold out the {count} largest value(s) of {column}"
    return rule


def _check_columns(frame, columns):
    unknown = [c for c in columns if c not in frame.columns]
    if unknown:
        raise ValueError(f"split rule: unknown column(s) {unknown}")


def train_mask(frame: pd.DataFrame, rule) -> np.ndarray:
    """The boolean training mask a rule selects; checks that both sides are non-empty."""
    if callable(rule):
        mask = rule(frame)
    elif isinstance(rule, str):
        mask = frame.eval(rule)
    else:
        mask = rule
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (len(frame),):
        raise ValueError(f"a split rule must give one boolean per row ({len(frame)}), got {mask.dtype} {mask.shape}")
    if mask.all() or not mask.any():
        raise ValueError(f"the split rule leaves {'no held-out' if mask.all() else 'no training'} rows")
    return mask


@dataclasses.dataclass
class Extrapolation:
    """A fit on the training rows, scored on them (in-sample) and on the held-out rest."""

    fit: Fit
    train: np.ndarray
    space: str
    r2_in: float
    r2_out: float
    rmse_in: float
    rmse_out: float

    def row(self) -> dict[str, Any]:
        return dict(n_train=int(self.train.sum()), n_test=int((~self.train).sum()), space=self.space,
                    r2_in=self.r2_in, r2_out=self.r2_out, rmse_in=self.rmse_in, rmse_out=self.rmse_out)


def extrapolation(law: Law, frame: pd.DataFrame, train, inputs: Mapping[str, str] | None = None,
                  target: str = "loss", space: str | None = None, **fit_kwargs) -> Extrapolation:
    """Fit `law` on the rows the rule `train` selects; R^2 and RMSE in `space` (default: the law's) on both parts.
    `fit_kwargs` go to `fit_law` (starts, seed, delta, fixed, ...)."""
    mask = train_mask(frame, train)
    fit = fit_law(law, frame[mask], inputs=inputs, target=target, **fit_kwargs)
    space = space or law.space
    held = frame[~mask]
    return Extrapolation(fit=fit, train=mask, space=space, r2_in=fit.r2(space=space), r2_out=fit.r2(held, space),
                         rmse_in=fit.rmse(space=space), rmse_out=fit.rmse(held, space))


def compare(laws: Sequence[Law], frame: pd.DataFrame, inputs: Mapping[str, str] | None = None,
            target: str = "loss", train=None, space: str | None = None,
            options: Mapping[str, Mapping[str, Any]] | None = None, **fit_kwargs) -> pd.DataFrame:
    """One row per law, all fitted to the same rows with the same loss and starts (`fit_kwargs`).

    inputs: {law input: column} for the union of the laws' inputs (each law takes its own). options: per-law extra
    fit arguments by law name, e.g. {"Shannon": {"fixed": {"b": 1.0}}}. Columns: k, n, objective, converged,
    starts_at_best, r2, rmse, aic, bic (all in `space`, default 'log' if every law is log-space), their
    differences from the best, and with a split rule `train`, r2_extrapolation and rmse_extrapolation."""
    if not laws:
        raise ValueError("compare needs at least one law")
    space = space or ("log" if all(law.space == "log" for law in laws) else "linear")
    options = dict(options or {})
    unknown = set(options) - {law.name for law in laws}
    if unknown:
        raise ValueError(f"options for unknown law(s) {sorted(unknown)}")
    rows, residuals = [], {}
    for law in laws:
        mapping = None if inputs is None else {k: inputs[k] for k in law.inputs if k in inputs}
        kwargs = {**fit_kwargs, **options.get(law.name, {})}
        fit = fit_law(law, frame, inputs=mapping, target=target, **kwargs)
        residuals[law.name] = fit.residuals(space=space)
        aic, bic = information_criteria(residuals[law.name], fit.k)
        row = dict(law=law.name, k=fit.k, n=fit.n_points, objective=fit.objective, converged=fit.converged,
                   starts_at_best=f"{fit.n_starts_at_best}/{fit.n_starts}", r2=fit.r2(space=space),
                   rmse=fit.rmse(space=space), aic=aic, bic=bic)
        if train is not None:
            ext = extrapolation(law, frame, train, inputs=mapping, target=target, space=space, **kwargs)
            row.update(r2_extrapolation=ext.r2_out, rmse_extrapolation=ext.rmse_out,
                       extrapolation_converged=ext.fit.converged)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("law")
    table.insert(table.columns.get_loc("aic") + 1, "delta_aic", table["aic"] - table["aic"].min())
    table["delta_bic"] = table["bic"] - table["bic"].min()
    table.attrs.update(space=space, target=target, fit_kwargs={k: v for k, v in fit_kwargs.items()},
                       residuals=residuals)
    return table


def compare_grouped(laws: Sequence[Law], frame: pd.DataFrame, by: Sequence[str], inputs: Mapping[str, str],
                    target: str = "loss", train=None, options: Mapping[str, Mapping[str, Any]] | None = None,
                    points: bool = False, **fit_kwargs):
    """`compare` within each group of `by` (say, each perturbation setting), and the held-out predictions.

    Returns (table, held): table has one row per (group, law) with compare's in-sample columns (delta_aic within
    the group) and, with a split rule, r2_extrapolation (log space) from a fit on the group's training rows;
    held has one row per (group, law, held-out row): the observed and predicted target. `pooled_r2(held)` gives
    the R^2 of all held-out rows together, the paper's pooled protocol. With `points`, a third frame: one row per
    (group, law, fitted row) with the in-sample residual (in the comparison's space) and the row's frame index
    `row`, for per-point likelihood comparisons (`caplab.papers.shannon.aic_gap_evidence`)."""
    tables, held_rows, point_rows = [], [], []
    for key, group in frame.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        table = compare(laws, group, inputs=inputs, target=target, options=options, **fit_kwargs)
        for law, residual in table.attrs.pop("residuals").items():
            point_rows.append(pd.DataFrame({**dict(zip(by, key)), "law": law, "row": group.index,
                                            "residual": residual}))
        if train is not None:
            mask = train_mask(group, train)
            held = group[~mask]
            for law in laws:
                fit = fit_law(law, group[mask], inputs={k: inputs[k] for k in law.inputs}, target=target,
                              **{**fit_kwargs, **dict(options or {}).get(law.name, {})})
                table.loc[law.name, "r2_extrapolation"] = fit.r2(held, space="log")
                table.loc[law.name, "extrapolation_converged"] = fit.converged
                held_rows.append(held.assign(law=law.name, observed=held[target], predicted=fit.predict(held)))
        for column, value in zip(by, key):
            table.insert(0, column, value)
        tables.append(table.reset_index())
    held = pd.concat(held_rows, ignore_index=True) if held_rows else pd.DataFrame()
    table = pd.concat(tables, ignore_index=True)
    if points:
        return table, held, pd.concat(point_rows, ignore_index=True)
    return table, held


def pooled_r2(held: pd.DataFrame) -> pd.Series:
    """Per law, R^2 in log space of every held-out row together (each predicted by its own group's fit)."""
    out = {}
    for law, rows in held.groupby("law", sort=False):
        y, p = np.log(rows.observed.to_numpy(float)), np.log(rows.predicted.to_numpy(float))
        out[law] = 1 - float(np.sum((y - p) ** 2)) / float(np.sum((y - y.mean()) ** 2))
    return pd.Series(out, name="r2_pooled_extrapolation")
