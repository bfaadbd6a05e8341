"""Fitting a `Law` to a tidy frame, the way /work/shared/FITTING.md asks: data frame in, `Fit` out.

Objective: sum_i w_i huber_delta(r_i), r_i the residual in the law's space (log y - log f for log-space laws),
huber(r) = r^2/2 for |r| <= delta, delta (|r| - delta/2) beyond; w_i = 1 except in the bootstrap (resample counts).
Optimiser: scipy L-BFGS-B from many starts (random, uniform in each parameter's start range in optimiser space,
or explicit ones, e.g. `grid_starts`), with the exact gradient: the law's formula differentiated once by sympy and
compiled to numpy (`caplab.stats.symbolic`), or dual numbers (`caplab.stats.dual`) where it cannot be traced.
The optimiser sees the objective divided by min(delta, 1e-3), so its tolerances are in units of residuals. A start
has converged when scipy says so; the fit reports the best start's status and how many starts reached the best
objective (within `best_rtol`), an identifiability diagnostic.

Information criteria (Gaussian residuals in the law's space, variance profiled out, constants dropped):
AIC = n ln(RSS/n) + 2k, BIC = n ln(RSS/n) + k ln n, k = number of fitted (not fixed) parameters.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from caplab.stats.dual import Dual
from caplab.stats.laws import Law
from caplab.stats.resampling import resample_indices


class ConvergenceWarning(UserWarning):
    """The best start of a fit (or many bootstrap refits) stopped before the optimiser's convergence test."""


def single_threaded_blas():
    """Hold BLAS to one thread (threadpoolctl): L-BFGS-B makes thousands of tiny BLAS calls, and OpenBLAS's
    threads make each one 10-20 times slower on a busy machine."""
    return threadpool_limits(1, user_api="blas")


def huber(r, delta):
    """Elementwise Huber loss: r^2/2 inside [-delta, delta], delta (|r| - delta/2) outside."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def information_criteria(residuals, k: int) -> tuple[float, float]:
    """(AIC, BIC) = (n ln(RSS/n) + 2k, n ln(RSS/n) + k ln n) of residuals with k fitted parameters; NaN for an
    exact fit (RSS = 0: as many parameters as points, or degenerate data), which no criterion can rank."""
    r = np.asarray(residuals, dtype=float)
    n = r.size
    rss = float(np.sum(r * r))
    if n == 0 or not rss > 0:
        return math.nan, math.nan
    base = n * math.log(rss / n)
    return base + 2 * k, base + k * math.log(n)


def design(law: Law, frame: pd.DataFrame, inputs: Mapping[str, str] | None, target: str | None):
    """Check the frame against the law and return ({input: array}, target array or None, inputs mapping).
    Raises ValueError for unknown columns, missing or extra inputs, non-finite or non-positive (where logged) data."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    inputs = dict(inputs) if inputs is not None else {name: name for name in law.inputs}
    missing, extra = set(law.inputs) - set(inputs), set(inputs) - set(law.inputs)
    if missing or extra:
        raise ValueError(f"law {law.name} takes inputs {list(law.inputs)}; mapping lacks {sorted(missing)}, "
                         f"has unknown {sorted(extra)}")
    columns = list(inputs.values()) + ([target] if target is not None else [])
    unknown = [c for c in columns if c not in frame.columns]
    if unknown:
        raise ValueError(f"unknown column(s) {unknown}; the frame has {list(frame.columns)}")
    if len(frame) == 0:
        raise ValueError("the frame has no rows")
    x = {}
    for name, column in inputs.items():
        x[name] = _column(frame, column, positive=name in law.positive_inputs)
    y = _column(frame, target, positive=law.space == "log") if target is not None else None
    return x, y, inputs


def _column(frame, column, positive):
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"column {column!r} has {int(np.sum(~np.isfinite(values)))} missing or non-finite "
                         "value(s): drop or fill them first (and record the exclusion)")
    if positive and np.any(values <= 0):
        raise ValueError(f"column {column!r} has {int(np.sum(values <= 0))} non-positive value(s), but its log is "
                         "taken")
    return values


class Objective:
    """The Huber objective of a law on fixed data, over the free parameters in optimiser space.

    gradient: "compiled" (the law's formula and its derivatives compiled once by `caplab.stats.symbolic`; checked
    against dual numbers at the first evaluation, and dual numbers are used where it cannot trace the formula or the
    check fails) or "dual" (dual numbers at every evaluation). Both are exact; they agree to rounding."""

    def __init__(self, law: Law, x, y, delta: float, fixed: Mapping[str, float], weights=None,
                 gradient: str = "compiled"):
        if not delta > 0:
            raise ValueError(f"delta must be positive, got {delta}")
        self.law, self.x, self.delta, self.fixed = law, x, float(delta), dict(fixed)
        self.free = [p for p in law.params if p.name not in self.fixed]
        self.y = np.log(y) if law.space == "log" else y
        self.weights = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
        self.scale = 1.0 / min(self.delta, 1e-3)
        self.exact = True
        if gradient not in ("compiled", "dual"):
            raise ValueError(f"gradient must be 'compiled' or 'dual', not {gradient!r}")
        self.compiled = None
        if gradient == "compiled":
            from caplab.stats.symbolic import compile_law  # sympy: imported where a fit is made
            self.compiled = compile_law(law, [p.name for p in self.free])
        self.checked = False
        self._free_names = [p.name for p in self.free]
        self._log_mask = np.array([p.log for p in self.free], dtype=bool)

    def natural(self, theta) -> dict[str, Any]:
        """{name: value} for all parameters from free optimiser-space values (arrays of any shape)."""
        out = {p.name: p.to_natural(theta[..., i]) for i, p in enumerate(self.free)}
        return {**{k: np.asarray(v, dtype=float) for k, v in self.fixed.items()}, **out}

    def internal(self, params: Mapping[str, float]) -> np.ndarray:
        return np.array([float(p.to_internal(params[p.name])) for p in self.free])

    def residuals(self, theta) -> np.ndarray:
        return self.y - self.law.evaluate(self.x, self.natural(np.asarray(theta, dtype=float)))[0].real

    def value(self, theta) -> float:
        return float(np.sum(self.weights * huber(self.residuals(theta), self.delta)))

    def value_and_grad(self, theta):
        """(objective, gradient) in the optimiser's scale: exact by dual numbers, else central differences."""
        k = len(self.free)
        if self.compiled is not None:
            pred, jac = self._compiled(theta)
            if not self.checked:
                self._check(theta, pred, jac)
        if self.compiled is None and self.exact:
            try:
                pred, jac = self._dual(theta)
            except TypeError:  # the formula uses something Dual does not support
                self.exact = False
        if not self.exact:
            steps = 1e-6 * np.maximum(1.0, np.abs(theta))
            batch = np.concatenate([theta[None, :], theta + np.diag(steps), theta - np.diag(steps)])
            out = self.law.evaluate(self.x, self.natural(batch))
            pred, jac = out[0], (out[1:k + 1] - out[k + 1:]) / (2 * steps[:, None])
        r = self.y - pred
        clipped = np.clip(r, -self.delta, self.delta)  # the Huber loss is clipped * (r - clipped / 2)
        value = float(np.sum(self.weights * clipped * (r - 0.5 * clipped)))
        grad = -np.sum(jac * (self.weights * clipped), axis=1)  # no BLAS: its threads thrash on busy machines
        if not (math.isfinite(value) and np.isfinite(grad).all()):
            return math.inf, np.zeros(k)
        return value * self.scale, grad * self.scale

    @property
    def method(self) -> str:
        """How the gradient is computed."""
        if self.compiled is not None:
            return "exact gradient (compiled by sympy)"
        return "exact gradient (dual numbers)" if self.exact else "central finite differences"

    def _compiled(self, theta):
        """Prediction (n,) and Jacobian (k, n) w.r.t. the free optimiser-space values, by the compiled formula."""
        natural = np.where(self._log_mask, np.exp(np.where(self._log_mask, theta, 0.0)), theta)
        p = {**self.fixed, **dict(zip(self._free_names, natural.tolist()))}
        chain = np.where(self._log_mask, natural, 1.0)
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            pred, jac = self.compiled(self.x, p)
        return pred, jac * chain[:, None]

    def _check(self, theta, pred, jac):
        """Compare the compiled formula with dual numbers once; fall back to dual numbers where they differ."""
        self.checked = True
        try:
            ref_pred, ref_jac = self._dual(theta)
        except TypeError:
            return
        agree = all(np.allclose(a, b, rtol=1e-7, atol=1e-10 * max(1.0, float(np.nanmax(np.abs(b), initial=0.0))),
                                equal_nan=True)
                    for a, b in ((pred, ref_pred), (jac, ref_jac)) if np.all(np.isfinite(b)))
        if not agree:
            warnings.warn(f"{self.law.name}: the compiled gradient disagrees with dual numbers; using dual numbers",
                          RuntimeWarning, stacklevel=3)
            self.compiled = None

    def _dual(self, theta):
        """Prediction (n,) in the law's space and its Jacobian (k, n) w.r.t. the free optimiser-space values."""
        k = len(self.free)
        p = {name: np.full((1, 1), value) for name, value in self.fixed.items()}
        for i, param in enumerate(self.free):
            value = float(param.to_natural(theta[i]))
            p[param.name] = Dual.seed(np.full((1, 1), value), k, i, value if param.log else 1.0)
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            out = self.law.fn(self.x, p)
        if not isinstance(out, Dual):
            return np.broadcast_to(out, (1, self.y.size))[0], np.zeros((k, self.y.size))
        jac = np.broadcast_to(out.grad, (k, 1, self.y.size)).reshape(k, -1)
        return np.broadcast_to(out.value, (1, self.y.size))[0], jac


def random_starts(law: Law, count: int, seed: int, fixed=()) -> list[dict[str, float]]:
    """`count` starts drawn uniformly from each free parameter's start range (in optimiser space)."""
    rng = np.random.default_rng(seed)
    free = [p for p in law.params if p.name not in fixed]
    draws = [rng.uniform(*p.internal_init, size=count) for p in free]
    return [{p.name: float(p.to_natural(d[i])) for p, d in zip(free, draws)} for i in range(count)]


def grid_starts(law: Law, points: int | Mapping[str, int] = 3, fixed=()) -> list[dict[str, float]]:
    """The Cartesian grid of starts, `points` values per free parameter spread evenly over its start range
    (in optimiser space); `points` may be a dict by parameter name."""
    free = [p for p in law.params if p.name not in fixed]
    axes = []
    for p in free:
        count = points.get(p.name, 3) if isinstance(points, Mapping) else points
        axes.append([float(p.to_natural(v)) for v in np.linspace(*p.internal_init, count)])
    return [dict(zip([p.name for p in free], combo)) for combo in itertools.product(*axes)]


def minimise(objective: Objective, starts: Sequence[Mapping[str, float]], maxiter: int, ftol: float, gtol: float):
    """L-BFGS-B from each start; a DataFrame with one row per start (objective, converged, nit, message, params)."""
    bounds = [p.internal_bounds for p in objective.free]
    rows = []
    for i, start in enumerate(starts):
        theta0 = objective.internal(start)
        lo = np.array([b[0] if b[0] is not None else -np.inf for b in bounds])
        hi = np.array([b[1] if b[1] is not None else np.inf for b in bounds])
        theta0 = np.clip(theta0, lo, hi)
        if objective.free:
            theta, nit = theta0, 0
            for attempt in range(2):  # a line-search failure gets one restart (fresh memory) from where it stopped
                res = minimize(objective.value_and_grad, theta, jac=True, method="L-BFGS-B", bounds=bounds,
                               options=dict(maxiter=maxiter - nit, maxfun=max(15000, 2 * maxiter), ftol=ftol,
                                            gtol=gtol))
                theta, success, nit, message = res.x, bool(res.success), nit + int(res.nit), str(res.message)
                if success or not message.startswith("ABNORMAL") or nit >= maxiter:
                    break
        else:
            theta, success, nit, message = theta0, True, 0, "no free parameters"
        value = objective.value(theta)
        rows.append(dict(start=i, objective=value if math.isfinite(value) else math.inf, converged=success,
                         nit=nit, message=message, theta=theta))
    return pd.DataFrame(rows)


@dataclasses.dataclass
class Fit:
    """A fitted law: parameters, diagnostics, the data it saw, and (after `bootstrap`) intervals."""

    law: Law
    params: dict[str, float]
    inputs: dict[str, str]
    target: str
    delta: float
    fixed: dict[str, float]
    objective: float
    converged: bool
    message: str
    n_points: int
    n_starts: int
    n_starts_at_best: int
    n_starts_converged: int
    best_rtol: float
    seed: int | None
    options: dict[str, Any]
    starts: pd.DataFrame
    elapsed_s: float
    x: dict[str, np.ndarray] = dataclasses.field(repr=False)
    y: np.ndarray = dataclasses.field(repr=False)
    intervals: pd.DataFrame | None = None
    derived: dict[str, float] = dataclasses.field(default_factory=dict)
    bootstrap_info: dict[str, Any] | None = None
    gradient: str = "compiled"  # the choice passed to `Objective`
    gradient_method: str = "exact gradient"  # what computed it (`Objective.method`)

    @property
    def k(self) -> int:
        """Number of fitted (free) parameters."""
        return len(self.law.params) - len(self.fixed)

    def _data(self, frame):
        if frame is None:
            return self.x, self.y
        x, y, _ = design(self.law, frame, self.inputs, self.target if self.target in frame.columns else None)
        return x, y

    def predict(self, frame: pd.DataFrame | None = None) -> np.ndarray:
        """Predicted target (natural units) on `frame` (default: the fitted data), columns as in `inputs`."""
        x, _ = self._data(frame)
        return self.law.predict(self.params, x)

    def residuals(self, frame: pd.DataFrame | None = None, space: str | None = None) -> np.ndarray:
        """observed - predicted in `space` ('log' or 'linear'; default: the law's space)."""
        x, y = self._data(frame)
        if y is None:
            raise ValueError(f"the frame has no target column {self.target!r}")
        pred = self.law.predict(self.params, x)
        space = space or self.law.space
        if space == "log":
            if np.any(pred <= 0) or np.any(y <= 0):
                raise ValueError("log-space residuals need positive observations and predictions")
            return np.log(y) - np.log(pred)
        if space != "linear":
            raise ValueError(f"space must be 'log' or 'linear', not {space!r}")
        return y - pred

    def r2(self, frame: pd.DataFrame | None = None, space: str | None = None) -> float:
        """1 - SS_res / SS_tot in `space` (default: the law's space) on `frame` (default: the fitted data)."""
        x, y = self._data(frame)
        r = self.residuals(frame, space)
        obs = np.log(y) if (space or self.law.space) == "log" else y
        return float(1.0 - np.sum(r * r) / np.sum((obs - obs.mean()) ** 2))

    def rmse(self, frame: pd.DataFrame | None = None, space: str | None = None) -> float:
        """Root mean squared residual in `space` (default: the law's space)."""
        r = self.residuals(frame, space)
        return float(np.sqrt(np.mean(r * r)))

    @property
    def aic(self) -> float:
        return information_criteria(self.residuals(), self.k)[0]

    @property
    def bic(self) -> float:
        return information_criteria(self.residuals(), self.k)[1]

    def table(self) -> pd.DataFrame:
        """One row per parameter (and derived quantity): value, interval bounds if bootstrapped, fixed or not."""
        rows = [dict(name=n, kind="parameter", value=v, fixed=n in self.fixed) for n, v in self.params.items()]
        rows += [dict(name=n, kind="derived", value=v, fixed=False) for n, v in self.derived.items()]
        out = pd.DataFrame(rows).set_index("name")
        if self.intervals is not None:
            out = out.join(self.intervals)
        return out

    def checklist(self) -> dict[str, Any]:
        """The FITTING.md checklist: law, data, loss, optimiser, starts, bootstrap, convergence."""
        boot = self.bootstrap_info or {}
        return {"law": self.law.name, "formula": self.law.formula, "citation": self.law.citation,
                "inputs": self.inputs, "target": self.target, "points used": self.n_points,
                "fixed": self.fixed or "none",
                "loss": f"Huber on {self.law.space} residuals, delta={self.delta:g}", "objective": self.objective,
                "optimiser": f"scipy L-BFGS-B, {self.gradient_method}, " + ", ".join(
                    f"{k}={v:g}" for k, v in self.options.items()),
                "starts": self.n_starts, "start seed": self.seed,
                "starts at best": f"{self.n_starts_at_best}/{self.n_starts} (rtol {self.best_rtol:g})",
                "starts converged": f"{self.n_starts_converged}/{self.n_starts}",
                "converged": self.converged, "message": self.message,
                "bootstrap": (f"{boot['n']} resamples, seed {boot['seed']}, {boot['level']:.0%} percentile, "
                              f"{boot['converged']} converged" if boot else "none"),
                "R2": self.r2(), "RMSE": self.rmse(), "space": self.law.space, "AIC": self.aic, "BIC": self.bic,
                "elapsed_s": round(self.elapsed_s, 3)}

    def summary(self) -> str:
        """Printable text: formula, parameter values with intervals, checklist."""
        lines = [str(self.law), ""]
        table = self.table()
        for name, row in table.iterrows():
            text = f"  {name:>14} = {row['value']:.6g}"
            if row["fixed"]:
                text += "  (fixed)"
            elif "lower" in table.columns and np.isfinite(row.get("lower", np.nan)):
                text += f"  [{row['lower']:.6g}, {row['upper']:.6g}]"
            lines.append(text)
        lines.append("")
        lines += [f"  {k}: {v}" for k, v in self.checklist().items() if k not in ("formula", "citation")]
        if self.law.notes:
            lines.append(f"  note: {self.law.notes}")
        return "\n".join(lines)

    __str__ = summary

    def contains(self, values: Mapping[str, float]) -> dict[str, bool]:
        """For each {name: value} (e.g. a paper's constants), whether it lies inside the bootstrap interval."""
        if self.intervals is None:
            raise ValueError("no intervals: run bootstrap(fit) first")
        return {n: bool(self.intervals.loc[n, "lower"] <= v <= self.intervals.loc[n, "upper"])
                for n, v in values.items()}


def fit_law(law: Law, frame: pd.DataFrame, inputs: Mapping[str, str] | None = None, target: str = "loss", *,
            starts: int | Sequence[Mapping[str, float]] = 50, seed: int = 0, delta: float = 1e-3,
            fixed: Mapping[str, float] | None = None, maxiter: int = 10_000, ftol: float = 1e-13,
            gtol: float = 1e-9, best_rtol: float = 1e-4, weights=None, warn: bool = True,
            gradient: str = "compiled") -> Fit:
    """Fit `law` to `frame[target]` with inputs {law input: column} (default: same names).

    starts: a count of random starts (seeded by `seed`) or explicit start dicts (e.g. `grid_starts(law)`).
    fixed: parameters held at given values (not fitted, not counted in AIC/BIC). gradient: see `Objective`.
    Warns (ConvergenceWarning) when the best start did not converge."""
    x, y, inputs = design(law, frame, inputs, target)
    fixed = {k: float(v) for k, v in (fixed or {}).items()}
    for name in fixed:
        law.param(name)  # raises for an unknown name
    if isinstance(starts, (int, np.integer)):
        if starts < 1:
            raise ValueError(f"starts must be >= 1, got {starts}")
        start_list = random_starts(law, int(starts), seed, fixed)
    else:
        start_list = [dict(s) for s in starts]
        free = [n for n in law.param_names if n not in fixed]
        for s in start_list:
            missing = [n for n in free if n not in s]
            if missing:
                raise ValueError(f"a start lacks parameter(s) {missing}")
        if not start_list:
            raise ValueError("no starts given")
    objective = Objective(law, x, y, delta, fixed, weights, gradient)
    check = objective.residuals(objective.internal(start_list[0]))  # shape and input checks before the real work
    if check.shape != y.shape:
        raise ValueError(f"law {law.name} returned shape {check.shape} for {y.shape[0]} points")
    began = time.perf_counter()
    with single_threaded_blas():
        table = minimise(objective, start_list, maxiter, ftol, gtol)
    elapsed = time.perf_counter() - began
    if not np.isfinite(table["objective"]).any():
        raise RuntimeError(f"law {law.name}: every start gave a non-finite objective")
    lowest = table["objective"].min()
    at_best = table["objective"] <= lowest + best_rtol * abs(lowest) + 1e-300
    ranked = table[at_best].sort_values(["converged", "objective"], ascending=[False, True])
    best = ranked.iloc[0]  # among starts at the best objective, a converged one if any
    params = {**fixed, **{n: float(v) for n, v in objective.natural(best["theta"]).items() if n not in fixed}}
    params = {n: params[n] for n in law.param_names}
    fit = Fit(law=law, params=params, inputs=inputs, target=target, delta=delta, fixed=fixed,
              objective=float(best["objective"]), converged=bool(best["converged"]), message=best["message"],
              n_points=len(y), n_starts=len(table), n_starts_at_best=int(at_best.sum()),
              n_starts_converged=int(table["converged"].sum()), best_rtol=best_rtol,
              seed=seed if isinstance(starts, (int, np.integer)) else None,
              options=dict(maxiter=maxiter, ftol=ftol, gtol=gtol), starts=table, elapsed_s=elapsed, x=x, y=y,
              gradient=gradient, gradient_method=objective.method)
    if warn and not fit.converged:
        warnings.warn(f"{law.name}: the best start did not converge ({fit.message})", ConvergenceWarning,
                      stacklevel=2)
    return fit


def bootstrap(fit: Fit, n: int = 1000, seed: int = 0, level: float = 0.95,
              derived: Mapping[str, Callable[[dict], float]] | None = None, starts: int = 0) -> Fit:
    """Percentile intervals by refitting on `n` resamples of the data points (with replacement, seeded).

    Each refit starts from the fitted optimum (plus `starts` random starts). `derived`: {name: f(params) -> float}
    gets a point value and an interval too. Returns a copy of `fit` with `intervals` (lower, upper, columns) and
    `bootstrap_info` (n, seed, level, converged, samples)."""
    if n < 2 or not 0 < level < 1:
        raise ValueError("bootstrap needs n >= 2 and 0 < level < 1")
    derived = dict(derived or {})
    rng = np.random.default_rng(seed)
    size = fit.n_points
    free = [p for p in fit.law.param_names if p not in fit.fixed]
    samples, converged = [], 0
    for i in range(n):
        weights = np.bincount(resample_indices(size, 1, rng)[0], minlength=size).astype(float)
        objective = Objective(fit.law, fit.x, fit.y, fit.delta, fit.fixed, weights, fit.gradient)
        start_list = [{k: fit.params[k] for k in free}]
        start_list += random_starts(fit.law, starts, int(rng.integers(2**31)), fit.fixed) if starts else []
        with single_threaded_blas():
            table = minimise(objective, start_list, **fit.options)
        best = table.loc[table["objective"].idxmin()]
        converged += bool(best["converged"])
        params = {k: float(v) for k, v in objective.natural(best["theta"]).items()}
        samples.append({**params, **{name: float(f(params)) for name, f in derived.items()}})
    samples = pd.DataFrame(samples)
    tail = (1 - level) / 2
    intervals = pd.DataFrame({"lower": samples.quantile(tail), "upper": samples.quantile(1 - tail)})
    intervals = intervals.drop(index=[k for k in fit.fixed if k in intervals.index])
    if converged < n:
        warnings.warn(f"{fit.law.name}: {n - converged} of {n} bootstrap refits did not converge",
                      ConvergenceWarning, stacklevel=2)
    info = dict(n=n, seed=seed, level=level, converged=converged, starts_per_resample=1 + starts, samples=samples)
    return dataclasses.replace(fit, intervals=intervals, bootstrap_info=info,
                               derived={name: float(f(fit.params)) for name, f in derived.items()})
