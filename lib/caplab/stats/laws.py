"""Scaling laws as data: a name, a formula over named inputs and parameters, bounds, a citation.

A `Law` holds a vectorised function `fn(x, p)` of a dict of input arrays (shape (n,)) and a dict of parameter
arrays (shape (m, 1): m parameter vectors evaluated at once) returning shape (m, n): the *log* of the prediction
when `space == "log"` (sums of positive terms are written with `lse`, so nothing overflows), the prediction
itself when `space == "linear"`. Residuals are taken in that space. Write `fn` with numpy arithmetic, exp, log,
log10, log1p, sqrt, power and the helpers of `caplab.stats.dual` (lse, log_softplus, where): the fitter then
gets exact gradients, by tracing the formula once with sympy (`caplab.stats.symbolic`; lse and log_softplus are
traced, where is not) or, where that fails, by dual numbers (anything else falls back to finite differences).
Parameters with `log=True` are positive and optimised as log(value).

Fitting lives in `caplab.stats.fitting`; `law.fit(frame, ...)` is a shortcut to `fitting.fit_law`.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

import numpy as np

from caplab.stats.dual import lse, log_softplus  # noqa: F401  (re-exported for law authors)

LN2, LN10 = math.log(2.0), math.log(10.0)
INF = math.inf


@dataclasses.dataclass(frozen=True)
class Param:
    """A parameter: optimiser bounds and the range random starts are drawn from, both in natural units.
    `log=True`: positive, optimised (and started uniformly) in log space."""

    name: str
    bounds: tuple[float, float]
    init: tuple[float, float]
    log: bool = False

    def __post_init__(self):
        lo, hi = self.bounds
        if not lo < hi or not self.bounds[0] <= self.init[0] <= self.init[1] <= self.bounds[1]:
            raise ValueError(f"parameter {self.name}: need bounds[0] <= init range <= bounds[1], got "
                             f"bounds {self.bounds}, init {self.init}")
        if self.log and lo <= 0:
            raise ValueError(f"parameter {self.name}: a log parameter needs a positive lower bound")
        if not (math.isfinite(self.init[0]) and math.isfinite(self.init[1])):
            raise ValueError(f"parameter {self.name}: the init range must be finite")

    def to_internal(self, value):
        return np.log(value) if self.log else np.asarray(value, dtype=float)

    def to_natural(self, internal):
        return np.exp(internal) if self.log else internal

    @property
    def internal_bounds(self):
        lo, hi = (math.log(b) if b < INF else INF for b in self.bounds) if self.log else self.bounds
        return (None if lo == -INF else lo, None if hi == INF else hi)

    @property
    def internal_init(self):
        return tuple(math.log(v) for v in self.init) if self.log else self.init


@dataclasses.dataclass(frozen=True)
class Law:
    """A scaling law as data. `references`: published parameter values, {source: {param: value}}."""

    name: str
    formula: str
    inputs: tuple[str, ...]
    params: tuple[Param, ...]
    fn: Callable
    space: str = "log"
    citation: str = ""
    notes: str = ""
    references: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    positive_inputs: tuple[str, ...] | None = None  # inputs whose logs are taken; None: all inputs

    def __post_init__(self):
        if self.space not in ("log", "linear"):
            raise ValueError(f"law {self.name}: space must be 'log' or 'linear', not {self.space!r}")
        names = self.param_names
        if len(set(names)) != len(names):
            raise ValueError(f"law {self.name}: duplicate parameter names {names}")
        object.__setattr__(self, "positive_inputs",
                           tuple(self.inputs) if self.positive_inputs is None else tuple(self.positive_inputs))

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise ValueError(f"law {self.name} has no parameter {name!r}; it has {self.param_names}")

    def with_param(self, name: str, bounds=None, init=None) -> "Law":
        """A copy with one parameter's bounds and/or start range replaced (natural units)."""
        old = self.param(name)
        new = dataclasses.replace(old, bounds=tuple(bounds or old.bounds), init=tuple(init or old.init))
        return dataclasses.replace(self, params=tuple(new if p.name == name else p for p in self.params))

    def evaluate(self, x: Mapping[str, np.ndarray], p: Mapping[str, np.ndarray]) -> np.ndarray:
        """fn with every parameter as an (m, 1) array; returns (m, n) in the law's space."""
        missing = [n for n in self.param_names if n not in p]
        if missing:
            raise ValueError(f"law {self.name}: missing parameter(s) {missing}")
        p = {n: np.reshape(np.asarray(p[n]), (-1, 1)) for n in self.param_names}
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            return np.atleast_2d(self.fn(x, p))

    def predict(self, params: Mapping[str, float], x: Mapping[str, np.ndarray]) -> np.ndarray:
        """Predictions in natural units (not logs) for one parameter set, given input arrays by name."""
        missing = [n for n in self.inputs if n not in x]
        if missing:
            raise ValueError(f"law {self.name}: missing input(s) {missing}")
        x = {n: np.asarray(x[n], dtype=float) for n in self.inputs}
        out = self.evaluate(x, params)[0]
        return np.exp(out) if self.space == "log" else out

    def fit(self, frame, inputs=None, target="loss", **kwargs):
        """Shortcut to `caplab.stats.fitting.fit_law(self, frame, inputs, target, **kwargs)`."""
        from caplab.stats.fitting import fit_law
        return fit_law(self, frame, inputs=inputs, target=target, **kwargs)

    def __str__(self):
        text = f"{self.name}: {self.formula}  [{', '.join(self.param_names)}]"
        return text + (f"  ({self.citation})" if self.citation else "")


def _exps(*names, bounds=(0.0, 3.0), init=(0.05, 1.0)):
    """Exponent parameters (natural units, not log-transformed)."""
    return tuple(Param(n, bounds, init) for n in names)


# Chinchilla, log-space LSE form (Besiroglu et al. 2024): log L = LSE(log A - alpha log N, log B - beta log D, log E)
CHINCHILLA = Law(
    name="Chinchilla",
    formula="L = E + A / N^alpha + B / D^beta",
    inputs=("N", "D"),
    params=(Param("A", (math.exp(-5), math.exp(50)), (1.0, math.exp(25)), log=True),
            Param("B", (math.exp(-5), math.exp(50)), (1.0, math.exp(25)), log=True),
            Param("E", (math.exp(-10), math.exp(5)), (math.exp(-1), math.exp(1.5)), log=True),
            *_exps("alpha", "beta", bounds=(0.0, 3.0), init=(0.0, 2.5))),
    fn=lambda x, p: lse(np.log(p["A"]) - p["alpha"] * np.log(x["N"]), np.log(p["B"]) - p["beta"] * np.log(x["D"]),
                        np.log(p["E"])),
    citation="Hoffmann et al. 2022 (arXiv 2203.15556); fitted as in Besiroglu et al. 2024 (arXiv 2404.10102)",
    references={"Hoffmann et al. 2022": dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
                "Besiroglu et al. 2024": dict(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)},
)

# Kaplan: log L = alpha_D * LSE((alpha_N/alpha_D)(log N_c - log N), log D_c - log D)
KAPLAN = Law(
    name="Kaplan",
    formula="L = ((N_c / N)^(alpha_N / alpha_D) + D_c / D)^alpha_D",
    inputs=("N", "D"),
    params=(Param("N_c", (1.0, 1e30), (1e4, 1e16), log=True), Param("D_c", (1.0, 1e30), (1e4, 1e16), log=True),
            *_exps("alpha_N", "alpha_D", bounds=(1e-3, 3.0), init=(0.02, 1.0))),
    fn=lambda x, p: p["alpha_D"] * lse(p["alpha_N"] / p["alpha_D"] * (np.log(p["N_c"]) - np.log(x["N"])),
                                       np.log(p["D_c"]) - np.log(x["D"])),
    citation="Kaplan et al. 2020 (arXiv 2001.08361), eq. 1.5",
    references={"Kaplan et al. 2020": dict(N_c=8.8e13, D_c=5.4e13, alpha_N=0.076, alpha_D=0.095)},
)


def _shannon(x, p):
    log_n, log_d = np.log(x["N"]), np.log(x["D"])
    log_noise = lse(np.log(p["c"]) + p["gamma"] * (log_d + log_n), np.log(p["d"]) + p["delta"] * log_d, np.log(p["e"]))
    log_snr = np.log(p["b"]) + p["beta"] * log_d - log_noise
    log_capacity = np.log(p["a"]) + p["alpha"] * log_n + log_softplus(log_snr) - math.log(LN2)
    return -log_capacity


SHANNON = Law(
    name="Shannon",
    formula="L = 1 / C,  C = a N^alpha log2(1 + b D^beta / (c (D N)^gamma + d D^delta + e))",
    inputs=("N", "D"),
    params=(Param("a", (1e-15, 1e15), (1e-4, 1e2), log=True),
            *(Param(n, (1e-15, 1e15), (1e-6, 1e6), log=True) for n in ("b", "c", "d", "e")),
            *_exps("alpha", "beta", "gamma", "delta", bounds=(0.0, 3.0), init=(0.01, 1.5))),
    fn=_shannon,
    citation="Ouyang et al. 2026 (arXiv 2605.23901), form as read from three summaries (see papers/shannon.md)",
    notes="b, c, d, e are identifiable only up to a common factor (scaling all four leaves C unchanged): fit with "
          "fixed={'b': 1.0} or read only c/b, d/b, e/b. The form itself is a reading of summaries: replaceable.",
)

def _shannon_without_d(x, p):
    log_n, log_d = np.log(x["N"]), np.log(x["D"])
    log_noise = lse(np.log(p["c"]) + p["gamma"] * (log_d + log_n), np.log(p["e"]))
    log_snr = np.log(p["b"]) + p["beta"] * log_d - log_noise
    return -(np.log(p["a"]) + p["alpha"] * log_n + log_softplus(log_snr) - math.log(LN2))


# The Shannon law with its d D^delta noise term removed (d = 0): the nested law of a likelihood-ratio test of
# whether that term (and so delta) is identified by the data
SHANNON_WITHOUT_D = Law(
    name="Shannon without d D^delta",
    formula="L = 1 / C,  C = a N^alpha log2(1 + b D^beta / (c (D N)^gamma + e))",
    inputs=("N", "D"),
    params=tuple(p for p in SHANNON.params if p.name not in ("d", "delta")),
    fn=_shannon_without_d,
    citation=SHANNON.citation + "; nested law (d = 0) for the likelihood-ratio test of the d D^delta term",
    notes="b, c, e identifiable only up to a common factor: fit with fixed={'b': 1.0}.",
)

QID = Law(
    name="QiD",
    formula="dL_q = k D^beta_q / (N^alpha_q P^gamma_q)",
    inputs=("N", "D", "P"),
    params=(Param("k", (1e-15, 1e15), (1e-6, 1e3), log=True),
            *_exps("alpha_q", "beta_q", "gamma_q", bounds=(0.0, 5.0), init=(0.05, 2.0))),
    fn=lambda x, p: (np.log(p["k"]) + p["beta_q"] * np.log(x["D"]) - p["alpha_q"] * np.log(x["N"])
                     - p["gamma_q"] * np.log(x["P"])),
    citation="Ouyang et al. 2024 (arXiv 2411.17691): quantization-induced degradation, target = L_quantized - L",
)

PTQ = Law(
    name="Precision (PTQ term)",
    formula="delta_PTQ = C_T D^gamma_D / N^gamma_N exp(-P / gamma_post)",
    inputs=("N", "D", "P"),
    params=(Param("C_T", (1e-15, 1e15), (1e-4, 1e2), log=True),
            *_exps("gamma_D", "gamma_N", bounds=(0.0, 5.0), init=(0.05, 1.5)),
            Param("gamma_post", (1e-3, 1e3), (0.1, 10.0), log=True)),
    fn=lambda x, p: (np.log(p["C_T"]) + p["gamma_D"] * np.log(x["D"]) - p["gamma_N"] * np.log(x["N"])
                     - x["P"] / p["gamma_post"]),
    citation="Kumar et al. 2024 (arXiv 2411.04330): post-training quantization degradation, target = L_PTQ - L",
    references={"Kumar et al. 2024": dict(C_T=0.0598, gamma_D=0.5068, gamma_N=0.3439, gamma_post=0.5907)},
    positive_inputs=("N", "D"),
)


def with_base(term: Law, base: Law = CHINCHILLA, name: str | None = None) -> Law:
    """The law `base + term` (both log-space sums of positive terms), e.g. Chinchilla plus a quantization term."""
    if term.space != "log" or base.space != "log":
        raise ValueError("with_base needs two log-space laws")
    clash = set(term.param_names) & set(base.param_names)
    if clash:
        raise ValueError(f"with_base: parameter names used by both laws: {sorted(clash)}")
    inputs = tuple(dict.fromkeys(base.inputs + term.inputs))
    positive = tuple(dict.fromkeys(base.positive_inputs + term.positive_inputs))
    return Law(name=name or f"{base.name} + {term.name}", formula=f"{base.formula}  +  {term.formula}",
               inputs=inputs, params=base.params + term.params, fn=lambda x, p: lse(base.fn(x, p), term.fn(x, p)),
               citation=f"{base.citation}; {term.citation}", positive_inputs=positive,
               references={k: v for k, v in term.references.items()})


# A perturbation of strength X (a noise sigma, SFT steps) adds d N^a D^b X^g (the generic term of the fact sheet)
PERTURBATION_TERM = Law(
    name="Perturbation term",
    formula="dL = d N^a D^b X^g",
    inputs=("N", "D", "X"),
    params=(Param("d", (1e-15, 1e15), (1e-6, 1e3), log=True),
            *(Param(n, (-3.0, 3.0), (-1.0, 1.0)) for n in ("a", "b", "g"))),
    fn=lambda x, p: np.log(p["d"]) + p["a"] * np.log(x["N"]) + p["b"] * np.log(x["D"]) + p["g"] * np.log(x["X"]),
    citation="generic perturbation-aware baseline, papers/shannon.md [notes]",
)
PERTURBED_CHINCHILLA = with_base(PERTURBATION_TERM, name="Chinchilla + perturbation term")
PRECISION = with_base(PTQ, name="Precision (Chinchilla + PTQ)")
QID_LOSS = with_base(QID, name="QiD (Chinchilla + QiD)")

POWER_LAW = Law(
    name="power law", formula="y = A x^alpha", inputs=("x",),
    params=(Param("A", (1e-30, 1e30), (1e-3, 1e3), log=True), Param("alpha", (-10.0, 10.0), (-2.0, 2.0))),
    fn=lambda x, p: np.log(p["A"]) + p["alpha"] * np.log(x["x"]),
    citation="generic",
)

LINEAR = Law(
    name="linear", formula="T* = a S + b", inputs=("S",), space="linear", positive_inputs=(),
    params=(Param("a", (-INF, INF), (0.0, 10.0)), Param("b", (-INF, INF), (-10.0, 10.0))),
    fn=lambda x, p: p["a"] * x["S"] + p["b"],
    citation="Zhang et al. 2023 (arXiv 2311.07052), the law of capacity gap",
    references={"Zhang et al. 2023 (units presumably M params)": dict(a=2.498, b=-11.498)},
    notes="residuals in linear units: delta is in the target's units (np.inf gives least squares)",
)

RATIO = Law(
    name="ratio", formula="T* = r S", inputs=("S",), space="linear", positive_inputs=(),
    params=(Param("r", (-INF, INF), (0.1, 10.0)),),
    fn=lambda x, p: p["r"] * x["S"],
    citation="Zhang et al. 2023 (arXiv 2311.07052): T* ~ 2.5 S",
    notes="residuals in linear units: delta is in the target's units (np.inf gives least squares)",
)

K_SATURATING = Law(
    name="k(N) saturating", formula="k = K_max N / (N + N0)", inputs=("N",),
    params=(Param("K_max", (1e-6, 1e3), (0.01, 2.0), log=True), Param("N0", (1.0, 1e15), (1e3, 1e12), log=True)),
    fn=lambda x, p: np.log(p["K_max"]) + np.log(x["N"]) - lse(np.log(x["N"]), np.log(p["N0"])),
    citation="Tan et al. 2025 (arXiv 2509.25300); their bounds: K_max in [0, 2], N0 in [0.1B, 100B]",
)

K_SATURATING_K = Law(
    name="k(N) saturating, k units", formula="k = K_max N / (N + N0)", inputs=("N",), space="linear",
    params=(Param("K_max", (1e-6, 1e3), (0.01, 2.0), log=True), Param("N0", (1.0, 1e15), (1e3, 1e12), log=True)),
    fn=lambda x, p: p["K_max"] * x["N"] / (x["N"] + p["N0"]),
    citation="Tan et al. 2025 (arXiv 2509.25300)",
    notes="residuals in k's units: comparable with the alternatives below even where some k is near 0",
)
K_POWER_K = Law(
    name="k(N) power, k units", formula="k = c N^p", inputs=("N",), space="linear",
    params=(Param("c", (1e-30, 1e30), (1e-6, 1e2), log=True), Param("p", (-5.0, 5.0), (-1.0, 1.0))),
    fn=lambda x, p: p["c"] * np.exp(p["p"] * np.log(x["N"])),
    citation="non-saturating alternative to Tan et al. 2025",
)
K_LOG_LINEAR_K = Law(
    name="k(N) linear in log N", formula="k = a + b log10 N", inputs=("N",), space="linear",
    params=(Param("a", (-INF, INF), (-1.0, 1.0)), Param("b", (-INF, INF), (-1.0, 1.0))),
    fn=lambda x, p: p["a"] + p["b"] * np.log10(x["N"]),
    citation="non-saturating alternative to Tan et al. 2025",
)

K_POWER = Law(
    name="k(N) power", formula="k = c N^p", inputs=("N",),
    params=(Param("c", (1e-30, 1e30), (1e-6, 1e2), log=True), Param("p", (-5.0, 5.0), (-1.0, 1.0))),
    fn=lambda x, p: np.log(p["c"]) + p["p"] * np.log(x["N"]),
    citation="non-saturating alternative to Tan et al. 2025",
)

RL_LOGLINEAR = Law(
    name="RL log-linear (one size)", formula="log10 L = -k log10 X + E0", inputs=("X",),
    params=(Param("k", (-10.0, 10.0), (0.0, 1.0)), Param("E0", (-100.0, 100.0), (-2.0, 5.0))),
    fn=lambda x, p: LN10 * (-p["k"] * np.log10(x["X"]) + p["E0"]),
    citation="Tan et al. 2025 (arXiv 2509.25300); L = 1 - Pass@1, X = compute or data",
)


def rl_law(saturating: bool = True, sizes=None) -> Law:
    """The RL law log10 L = -k(N) log10 X + E0(N) over inputs N, X.

    k(N) = K_max N / (N + N0) (saturating) or c N^p (not). E0(N): one parameter per model size when `sizes` (the
    distinct N values) is given, named 'E0[<size>]', else the variant E0_max N / (N + N1)."""
    if saturating:
        k_params, k_text = K_SATURATING.params, "K_max N / (N + N0)"
        k_fn = lambda p, n: p["K_max"] * n / (n + p["N0"])  # noqa: E731
    else:
        k_params, k_text = K_POWER.params, "c N^p"
        k_fn = lambda p, n: p["c"] * np.exp(p["p"] * np.log(n))  # noqa: E731
    if sizes is None:
        e_params = (Param("E0_max", (-100.0, 100.0), (-2.0, 5.0)), Param("N1", (1.0, 1e15), (1e3, 1e12), log=True))
        e_text = "E0_max N / (N + N1)"
        e_fn = lambda p, n: p["E0_max"] * n / (n + p["N1"])  # noqa: E731
    else:
        sizes = np.unique(np.asarray(sizes, dtype=float))
        names = [f"E0[{s:.6g}]" for s in sizes]
        if len(set(names)) != len(names):
            raise ValueError("rl_law: sizes too close to name apart at 6 significant digits")
        e_params = tuple(Param(n, (-100.0, 100.0), (-2.0, 5.0)) for n in names)
        e_text = "E0[N] (one per size)"

        def e_fn(p, n):
            index = np.clip(np.searchsorted(sizes, n), 0, len(sizes) - 1)
            if not np.allclose(sizes[index], n, rtol=1e-9):
                raise ValueError(f"rl_law: N values {sorted(set(n[~np.isclose(sizes[index], n)]))[:5]} are not "
                                 f"among the law's sizes {sizes.tolist()}")
            total = 0.0
            for j, name in enumerate(names):
                total = total + p[name] * (index == j)
            return total

    def fn(x, p):
        n = x["N"]
        return LN10 * (-k_fn(p, n) * np.log10(x["X"]) + e_fn(p, n))

    return Law(name=f"RL ({'saturating' if saturating else 'power'} k)",
               formula=f"log10 L = -k(N) log10 X + E0(N),  k(N) = {k_text},  E0(N) = {e_text}",
               inputs=("N", "X"), params=k_params + e_params, fn=fn,
               citation="Tan et al. 2025 (arXiv 2509.25300); L = 1 - Pass@1, X = compute or data")


RL_SATURATING = rl_law(saturating=True)
RL_POWER = rl_law(saturating=False)

LAWS = {law.name: law for law in (CHINCHILLA, KAPLAN, SHANNON, SHANNON_WITHOUT_D, QID, PTQ, PRECISION, QID_LOSS, PERTURBATION_TERM,
                                  PERTURBED_CHINCHILLA, POWER_LAW, LINEAR,
                                  RATIO, K_SATURATING, K_POWER, K_SATURATING_K, K_POWER_K, K_LOG_LINEAR_K,
                                  RL_LOGLINEAR, RL_SATURATING, RL_POWER)}
