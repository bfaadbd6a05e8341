"""The densing method (Xiao et al. 2024, arXiv 2412.04315): capability density and its growth.

Two fitted steps map a model's parameters N (trained on D tokens) to a benchmark score S:

    step 1 (loss):  L = a N^-alpha + b D^-beta          (LOSS_LAW; LOSS_LAW_IRREDUCIBLE adds a constant e)
    step 2 (score): S = c / (1 + exp(-gamma (L - l))) + d   (SIGMOID; gamma < 0 when the score falls with loss)

Inverted, they give a target model's effective size: the parameters a reference model trained on D0 tokens
would need to reach the target's score,

    L_hat = l - ln(c / (S - d) - 1) / gamma,     N_hat = ((L_hat - b D0^-beta - e) / a)^(-1/alpha),

and its density rho = N_hat / N. The inversion is undefined outside the sigmoid's open range (S <= d or
S >= c + d) and where L_hat is at or below the loss the reference family reaches with infinitely many parameters
at D0 (b D0^-beta + e): measurable density has a floor and a ceiling. `effective_size` returns NaN there with a
`status` saying which, so that a report can count what it could not read.

The growth law is fitted on the envelope (the models that set a density record when released):
ln rho_max = A t + B (GROWTH_LAW, t in days), doubling time ln 2 / A. All fits go through
`caplab.stats.fitting` (Huber, multi-start L-BFGS-B, bootstrap); `growth_permutation_p` is the control for the
envelope: the record-setters of an exchangeable (non-growing) sequence rise too.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from caplab.stats.fitting import Fit, bootstrap, fit_law
from caplab.stats.laws import INF, LN2, Law, Param, lse

PAPER = {"A_per_day": 0.0073, "t0": "2023-02-24", "D0_tokens": 1e12, "doubling_days": 95}
OK, BELOW_FLOOR, ABOVE_CEILING, BEYOND_LOSS_LIMIT = "ok", "score at or below d", "score at or above c + d", \
    "loss at or below the D0 limit"

LOSS_LAW = Law(
    name="densing loss", formula="L = a N^-alpha + b D^-beta", inputs=("N", "D"),
    params=(Param("a", (1e-10, 1e15), (1e-2, 1e4), log=True), Param("alpha", (0.0, 3.0), (0.05, 1.0)),
            Param("b", (1e-10, 1e15), (1e-2, 1e4), log=True), Param("beta", (0.0, 3.0), (0.05, 1.0))),
    fn=lambda x, p: lse(np.log(p["a"]) - p["alpha"] * np.log(x["N"]), np.log(p["b"]) - p["beta"] * np.log(x["D"])),
    citation="Xiao et al. 2024 (arXiv 2412.04315), eq. 2; no irreducible term",
)

LOSS_LAW_IRREDUCIBLE = Law(
    name="densing loss + irreducible", formula="L = a N^-alpha + b D^-beta + e", inputs=("N", "D"),
    params=LOSS_LAW.params + (Param("e", (1e-8, 1e2), (1e-3, 1.0), log=True),),
    fn=lambda x, p: lse(np.log(p["a"]) - p["alpha"] * np.log(x["N"]), np.log(p["b"]) - p["beta"] * np.log(x["D"]),
                        np.log(p["e"])),
    citation="Chinchilla form (Hoffmann et al. 2022) in the densing notation: a variant, not the paper's",
)

SIGMOID = Law(
    name="densing sigmoid", formula="S = c / (1 + exp(-gamma (L - l))) + d", inputs=("L",), space="linear",
    positive_inputs=(),
    params=(Param("c", (1e-4, 2.0), (0.3, 1.0), log=True), Param("gamma", (-1e3, 1e3), (-30.0, -1.0)),
            Param("l", (-INF, INF), (0.1, 2.0)), Param("d", (-1.0, 1.0), (0.0, 0.3))),
    fn=lambda x, p: p["c"] / (1.0 + np.exp(-p["gamma"] * (x["L"] - p["l"]))) + p["d"],
    citation="Xiao et al. 2024 (arXiv 2412.04315), eq. 3",
    notes="residuals in score units; c > 0, so gamma < 0 means the score falls as the loss rises",
)

GROWTH_LAW = Law(
    name="densing growth", formula="ln rho_max = A t + B", inputs=("t",), positive_inputs=(),
    params=(Param("A", (-INF, INF), (-0.01, 0.01)), Param("B", (-INF, INF), (-5.0, 5.0))),
    fn=lambda x, p: p["A"] * x["t"] + p["B"],
    citation="Xiao et al. 2024 (arXiv 2412.04315): A ~ 0.0073 per day, t in days since 2023-02-24",
    references={"Xiao et al. 2024": {"A": 0.0073}},
    notes="residuals on ln rho; t in days",
)


def doubling_time(rate: float) -> float:
    """Days for density to double at growth rate `rate` per day (ln 2 / A); inf for a non-positive rate."""
    return LN2 / rate if rate > 0 else math.inf


# -- the two steps ------------------------------------------------------------------------------------------------
def _need(frame: pd.DataFrame, columns) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks column(s) {missing}; it has {list(frame.columns)}")
    if len(frame) == 0:
        raise ValueError("the frame has no rows")


def fit_loss(frame: pd.DataFrame, *, irreducible: bool = False, params: str = "params_non_embedding",
             tokens: str = "tokens", loss: str = "loss", starts: int = 64, seed: int = 0, delta: float = 1e-3) -> Fit:
    """Step 1 on a reference family (one row per model and token count): the loss law fitted in log space."""
    _need(frame, [params, tokens, loss])
    law = LOSS_LAW_IRREDUCIBLE if irreducible else LOSS_LAW
    return fit_law(law, frame, inputs={"N": params, "D": tokens}, target=loss, starts=starts, seed=seed,
                   delta=delta, warn=False)


def fit_sigmoid(frame: pd.DataFrame, *, loss: str = "loss", score: str = "score", starts: int = 64, seed: int = 0,
                delta: float = 1e-3) -> Fit:
    """Step 2: the score-from-loss sigmoid (residuals in score units). Needs at least 5 models (4 parameters)."""
    _need(frame, [loss, score])
    if len(frame) < 5:
        raise ValueError(f"the sigmoid has 4 parameters: give at least 5 models, got {len(frame)}")
    return fit_law(SIGMOID, frame, inputs={"L": loss}, target=score, starts=starts, seed=seed, delta=delta,
                   warn=False)


def loss_at(loss_params: dict, N, D) -> np.ndarray:
    """Step 1 forward: the loss law at (N, D) (with `e` if the parameters have it)."""
    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    out = loss_params["a"] * N ** -loss_params["alpha"] + loss_params["b"] * D ** -loss_params["beta"]
    return out + loss_params.get("e", 0.0)


def score_at(sigmoid_params: dict, L) -> np.ndarray:
    """Step 2 forward: the sigmoid at loss L."""
    p, L = sigmoid_params, np.asarray(L, dtype=float)
    with np.errstate(over="ignore"):
        return p["c"] / (1.0 + np.exp(-p["gamma"] * (L - p["l"]))) + p["d"]


def loss_from_score(sigmoid_params: dict, S) -> tuple[np.ndarray, np.ndarray]:
    """Step 2 inverted: (L_hat, status). L_hat is NaN where S is not strictly inside (d, c + d)."""
    p, S = sigmoid_params, np.atleast_1d(np.asarray(S, dtype=float))
    if p["gamma"] == 0:
        raise ValueError("a sigmoid with gamma = 0 is flat: it cannot be inverted")
    u = (S - p["d"]) / p["c"]                    # in (0, 1) inside the sigmoid's range
    status = np.where(u <= 0, BELOW_FLOOR, np.where(u >= 1, ABOVE_CEILING, OK)).astype(object)
    with np.errstate(divide="ignore", invalid="ignore"):
        L_hat = p["l"] - np.log(1.0 / u - 1.0) / p["gamma"]
    return np.where(status == OK, L_hat, np.nan), status


def size_from_loss(loss_params: dict, L, D0: float) -> tuple[np.ndarray, np.ndarray]:
    """Step 1 inverted at D0: (N_hat, status); NaN where L is at or below b D0^-beta (+ e)."""
    if not D0 > 0:
        raise ValueError(f"D0 must be a positive token count, got {D0}")
    p, L = loss_params, np.atleast_1d(np.asarray(L, dtype=float))
    excess = L - p["b"] * D0 ** -p["beta"] - p.get("e", 0.0)
    ok = np.isfinite(L) & (excess > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        N_hat = (excess / p["a"]) ** (-1.0 / p["alpha"])
    status = np.where(ok, OK, BEYOND_LOSS_LIMIT).astype(object)
    return np.where(ok, N_hat, np.nan), status


def effective_size(S, loss_params: dict, sigmoid_params: dict, D0: float) -> pd.DataFrame:
    """Score -> loss -> effective size at D0: columns score, loss_hat, n_hat, status (OK or why undefined)."""
    L_hat, status = loss_from_score(sigmoid_params, S)
    N_hat, status_n = size_from_loss(loss_params, L_hat, D0)
    status = np.where(status == OK, status_n, status)
    return pd.DataFrame({"score": np.atleast_1d(np.asarray(S, dtype=float)), "loss_hat": L_hat,
                         "n_hat": np.where(status == OK, N_hat, np.nan), "status": status})


def densities(targets: pd.DataFrame, loss_params: dict, sigmoid_params: dict, D0: float, *, score: str = "score",
              params: str = "params") -> pd.DataFrame:
    """`targets` with loss_hat, n_hat, status and density = n_hat / params (NaN where undefined)."""
    _need(targets, [score, params])
    est = effective_size(targets[score].to_numpy(), loss_params, sigmoid_params, D0)
    out = targets.reset_index(drop=True).copy()
    out["loss_hat"], out["n_hat"], out["status"] = est.loss_hat, est.n_hat, est.status
    out["density"] = out.n_hat / out[params].astype(float)
    return out


# -- the envelope and its growth ----------------------------------------------------------------------------------
def envelope(frame: pd.DataFrame, *, date: str = "t", density: str = "density") -> pd.DataFrame:
    """The record-setters: rows (in date order) whose density exceeds every earlier release's. Several releases on
    one date compete with each other (the highest counts). Rows with an undefined density never set a record."""
    _need(frame, [date, density])
    ordered = frame[np.isfinite(frame[density].astype(float))].sort_values([date, density], ascending=[True, False],
                                                                            kind="stable")
    best, keep = -math.inf, []
    for index, value in zip(ordered.index, ordered[density].astype(float)):
        keep.append(value > best)
        best = max(best, value)
    return ordered[keep]


def fit_growth(points: pd.DataFrame, *, date: str = "t", density: str = "density", n_boot: int = 1000,
               seed: int = 0) -> Fit:
    """ln rho = A t + B by least squares on the given points (the envelope), with bootstrap intervals over points
    for A, B and the doubling time (`derived`). Needs at least 3 points with distinct dates."""
    _need(points, [date, density])
    if points[date].nunique() < 3:
        raise ValueError(f"the growth law needs at least 3 distinct dates, got {points[date].nunique()}")
    fit = fit_law(GROWTH_LAW, points, inputs={"t": date}, target=density, starts=8, seed=seed, delta=math.inf,
                  warn=False)
    return bootstrap(fit, n=n_boot, seed=seed, derived={"doubling_days": lambda p: doubling_time(p["A"])})


def envelope_slope(t, log_density) -> float:
    """OLS slope of ln(density) on t over the envelope (record-setters, as `envelope`) of the points; NaN with
    fewer than 2 record dates. Plain numpy: the permutation control calls it thousands of times."""
    t, y = np.asarray(t, dtype=float), np.asarray(log_density, dtype=float)
    order = np.lexsort((-y, t))                     # by date, the highest first within a date
    t, y = t[order], y[order]
    previous = np.concatenate([[-np.inf], np.maximum.accumulate(y)[:-1]])
    record = y > previous
    t, y = t[record], y[record]
    if np.unique(t).size < 2:
        return math.nan
    tc = t - t.mean()
    return float(np.sum(tc * (y - y.mean())) / np.sum(tc * tc))


def ols_slope(t, y) -> float:
    """Least-squares slope of y on t (NaN with fewer than 2 distinct t)."""
    t, y = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
    tc = t - t.mean()
    denominator = float(np.sum(tc * tc))
    return float(np.sum(tc * (y - y.mean())) / denominator) if denominator > 0 else math.nan


def growth_permutation_p(t, density, *, n_perm: int = 2000, seed: int = 0) -> tuple[float, float]:
    """(slope of ln density on date over all models, one-sided permutation p-value): how often release dates
    shuffled over the same models give a slope at least as steep. The control of the growth claim: the envelope's
    own slope is no test statistic, since the record-setters of an exchangeable sequence rise too (and steeply,
    over a short span); the slope over every model whose density is defined is exchangeable under no growth."""
    t, log_rho = np.asarray(t, dtype=float), np.log(np.asarray(density, dtype=float))
    keep = np.isfinite(log_rho)
    t, log_rho = t[keep], log_rho[keep]
    if len(t) < 3 or np.unique(t).size < 2:
        return math.nan, math.nan
    observed = ols_slope(t, log_rho)
    rng = np.random.default_rng(seed)
    tc = t - t.mean()
    perms = np.array([rng.permutation(tc) for _ in range(n_perm)])            # (n_perm, n): centred dates
    slopes = perms @ (log_rho - log_rho.mean()) / np.sum(tc * tc)
    return observed, float((1 + np.sum(slopes >= observed - 1e-12)) / (n_perm + 1))
