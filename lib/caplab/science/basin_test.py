"""Basins that noise cannot fake: a per-setting test of "this setting's loss series have U-shapes", by a paired
bootstrap over evaluation blocks, against the clean setting.

Input: the tidy losses of a perturbation scan (one row per model, checkpoint, setting and draw; columns model,
params_non_embedding, target_tokens, setting, draw) and the per-block losses of each row (`blocks`, rows x evaluation
blocks; the same blocks for every row, so settings are paired on them).

A series is one model's losses along checkpoints, or one checkpoint's losses along model sizes. Its basin depth is
min(y_first - y_min, y_last - y_min) at an interior minimum: positive for a U, at most 0 in expectation for a
monotone series, *provided the minimum is located on data independent of the data it is measured on*. Two
sources of noise could otherwise fake a basin: the evaluation blocks, and a random perturbation's own draw (one
noise draw can make one checkpoint look good). So the minimum is located on half of the blocks (even-numbered)
and on the first half of the draws; the depth is measured on the other blocks and the other draws (a
deterministic setting, clean or quantized, has one draw, used for both). A setting's depth is the mean over its
series.

The bootstrap resamples the measuring blocks (one index draw for every setting: paired), and adds the draw
variance the blocks cannot show: a Gaussian term per point with the between-draw variance of that setting
(estimated from its draws, pooled over points, divided by the number of measuring draws). Two one-sided p-values
(normal approximation with the bootstrap standard error; basic-bootstrap intervals) per series: depth > 0, and depth minus the same clean series' depth > 0 (paired); a series'
p-value is the larger (both must hold), a setting's is Simes' combination over its series (valid under the positive
dependence of series that share checkpoints), and basins are the Benjamini-Hochberg discoveries at `q` over the
perturbed settings.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm
from statsmodels.stats.multitest import multipletests


def _series(points: pd.DataFrame) -> list[np.ndarray]:
    """Index arrays into `points` (one row per model and checkpoint): along tokens per model, along size per
    checkpoint, each sorted along its axis; only series of at least 3 points."""
    out = []
    for fixed, axis in (("model", "target_tokens"), ("target_tokens", "params_non_embedding")):
        for _, rows in points.groupby(fixed, sort=True):
            index = rows.sort_values(axis, kind="stable").index.to_numpy()
            if len(index) >= 3:
                out.append(index)
    return out


def _depths(located: np.ndarray, measured: np.ndarray, series: list[np.ndarray]) -> np.ndarray:
    """Basin depth per series: the interior minimum located on `located` (points,), read on `measured`
    (points, ...) -> (series, ...)."""
    out = []
    for index in series:
        i = index[1 + int(np.argmin(located[index[1:-1]]))]
        y = measured[index]
        out.append(np.minimum(y[0] - measured[i], y[-1] - measured[i]))
    return np.stack(out)


def basin_test(frame: pd.DataFrame, blocks: np.ndarray, *, n: int = 1000, seed: int = 0, q: float = 0.05,
               level: float = 0.95, clean: str = "none") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(settings, series). settings: one row per setting (the clean setting first): series (how many), draws,
    draw_sd (between-draw sd of a point's loss), basin_rate (share of its series whose depth interval lies above
    0), depth_max, the series with the smallest p-value (deepest, its interval, its excess over the same clean
    series with the paired interval), p_value (Simes' combination over the setting's series of each series'
    p-value, the larger of "depth > 0" and "depth > the clean series' depth") and basin (a Benjamini-Hochberg
    discovery at `q` among the perturbed settings; the clean setting's `basin` is its own depth test at `q`, the
    control). series: one row per (setting, series) with its depth, interval, excess over clean and p-value."""
    blocks = np.asarray(blocks, dtype=float)
    if blocks.ndim != 2 or len(blocks) != len(frame):
        raise ValueError(f"blocks must be rows x evaluation blocks with one row per frame row ({len(frame)}), "
                         f"got shape {blocks.shape}")
    if blocks.shape[1] < 4:
        raise ValueError(f"the basin test splits the evaluation blocks in two: give at least 4, got {blocks.shape[1]}")
    if clean not in set(frame.setting):
        raise ValueError(f"basin_test needs the clean setting {clean!r} as the control")
    if n < 20:
        raise ValueError(f"n (bootstrap resamples) must be at least 20, got {n}")
    frame = frame.reset_index(drop=True)
    points = frame[frame.setting == clean][["model", "target_tokens", "params_non_embedding"]]
    points = points.drop_duplicates(["model", "target_tokens"]).reset_index(drop=True)
    key = pd.MultiIndex.from_frame(points[["model", "target_tokens"]])
    series = _series(points)
    if not series:
        raise ValueError("no series of at least 3 points (models x checkpoints) to read basins from")
    locate_blocks, measure_blocks = np.arange(0, blocks.shape[1], 2), np.arange(1, blocks.shape[1], 2)
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, len(measure_blocks), len(measure_blocks)),
                                   minlength=len(measure_blocks)) for _ in range(n)]) / len(measure_blocks)
    z = rng.standard_normal((len(points), n))                     # shared: paired draw terms across settings

    settings = [clean] + [s for s in frame.setting.unique() if s != clean]
    where = pd.Series(np.arange(len(points)), index=key)
    position = where.reindex(pd.MultiIndex.from_frame(frame[["model", "target_tokens"]])).to_numpy()
    if np.isnan(position).any():
        raise ValueError("some rows name a (model, checkpoint) that the clean setting lacks")
    position = position.astype(int)
    point_depth, boot_depth, info = {}, {}, {}
    for setting in settings:
        in_setting = (frame.setting == setting).to_numpy()
        draws = sorted(frame.draw[in_setting].unique())
        locate_draws = draws[:max(1, len(draws) // 2)]
        measure_draws = draws[len(draws) // 2:] if len(draws) > 1 else draws

        def matrix(which, cols):
            chosen = np.flatnonzero(in_setting & frame.draw.isin(which).to_numpy())
            total = np.zeros((len(points), len(cols)))
            np.add.at(total, position[chosen], blocks[np.ix_(chosen, cols)])
            count = np.bincount(position[chosen], minlength=len(points))
            if (count == 0).any():
                raise ValueError(f"setting {setting!r} lacks points that the clean setting has")
            return total / count[:, None]

        all_blocks = np.arange(blocks.shape[1])
        located = matrix(locate_draws, locate_blocks).mean(axis=1)
        measured = matrix(measure_draws, measure_blocks)                 # (points, measuring blocks)
        if len(draws) > 1:
            per_draw = np.stack([matrix([d], all_blocks).mean(axis=1) for d in draws])    # (draws, points)
            draw_sd = float(np.sqrt(np.mean(per_draw.var(axis=0, ddof=1))))
        else:
            draw_sd = 0.0
        boot = measured @ counts.T + draw_sd / np.sqrt(len(measure_draws)) * z          # (points, n)
        point_depth[setting] = _depths(located, measured.mean(axis=1), series)              # (series,)
        boot_depth[setting] = _depths(located, boot, series)                                # (series, n)
        info[setting] = dict(draws=len(draws), draw_sd=draw_sd)

    tail = (1 - level) / 2
    models, tokens = points.model.to_numpy(), points.target_tokens.to_numpy()
    along = ["tokens" if models[index[1]] == models[index[0]] else "params" for index in series]
    described = pd.DataFrame({"along": along, "held": [str(models[i[0]]) if a == "tokens" else str(int(tokens[i[0]]))
                                                      for i, a in zip(series, along)]})

    def basic(value, reps):
        """Per series: basic-bootstrap interval, and the one-sided p-value of 'the depth is at most 0' from the
        normal approximation with the bootstrap's standard error (a count of resamples could not reach the small
        p-values that Simes and Benjamini-Hochberg ask of many series and settings)."""
        centred = reps - value[:, None]
        lo, hi = np.quantile(centred, [1 - tail, tail], axis=1)
        sd = np.maximum(centred.std(axis=1, ddof=1), 1e-12)
        return value - lo, value - hi, norm.sf(value / sd)

    def simes(p):
        ranked = np.sort(p)
        return float(min(1.0, np.min(len(p) * ranked / np.arange(1, len(p) + 1))))

    rows, per_series = [], []
    for setting in settings:
        value, reps = point_depth[setting], boot_depth[setting]
        lo, hi, p_depth = basic(value, reps)
        diff, diff_reps = value - point_depth[clean], reps - boot_depth[clean]
        dlo, dhi, p_diff = basic(diff, diff_reps)
        p = p_depth if setting == clean else np.maximum(p_depth, p_diff)
        best = int(np.argmin(p))
        rows.append({"setting": setting, "series": len(series), **info[setting],
                     "basin_rate": float(np.mean(lo > 0)), "depth_max": float(value.max()),
                     "deepest": float(value[best]), "deepest_lo": float(lo[best]), "deepest_hi": float(hi[best]),
                     "deepest_minus_clean": float(diff[best]), "deepest_minus_clean_lo": float(dlo[best]),
                     "deepest_minus_clean_hi": float(dhi[best]), "p_value": simes(p)})
        per_series.append(pd.DataFrame({"setting": setting, "along": described.along, "held": described.held,
                                        "depth": value, "lo": lo, "hi": hi, "minus_clean": diff, "p_value": p}))
    table = pd.DataFrame(rows)
    perturbed = table.setting != clean
    table["basin"] = False
    if perturbed.any():
        table.loc[perturbed, "basin"] = multipletests(table.loc[perturbed, "p_value"].to_numpy(), alpha=q,
                                                      method="fdr_bh")[0]
    table.loc[~perturbed, "basin"] = table.loc[~perturbed, "p_value"] <= q
    return table, pd.concat(per_series, ignore_index=True)
