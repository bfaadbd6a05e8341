"""A law's formula compiled to one numpy function giving its value and exact gradient (sympy, once per law).

The fitter's hot loop is one evaluation of a law and its gradient per L-BFGS-B iteration, thousands per start.
On dual numbers (`caplab.stats.dual`) every arithmetic step of the formula is a few Python calls; here the formula
is traced once with symbols (the same `fn`, unchanged: a `Tracer` plays the role a `Dual` plays), differentiated by
sympy, and printed by `sympy.lambdify` with common subexpressions shared, so an evaluation is one flat sequence of
numpy operations. `lse` and `log_softplus` stay stable: they are traced as the functions `LSE` and `LogSoftplus`,
whose derivatives are written in terms of themselves, and evaluated by numpy's `logaddexp` and the same shifted
form `caplab.stats.dual` uses.

A formula that cannot be traced (control flow on values, numpy functions beyond the ufuncs `Dual` supports)
makes `compile_law` return None, and the fitter uses dual numbers; `Objective` also checks the compiled gradient
against the dual one at its first evaluation.
"""
from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

import numpy as np
import sympy



class LSE(sympy.Function):
    """log(sum_i exp(x_i)), differentiated as softmax weights exp(x_i - LSE)."""

    def fdiff(self, argindex=1):
        return sympy.exp(self.args[argindex - 1] - self)


class LogSoftplus(sympy.Function):
    """log(log(1 + e^s)); derivative sigmoid(s) / softplus(s) = exp(s - LSE(0, s) - LogSoftplus(s))."""
    nargs = 1

    def fdiff(self, argindex=1):
        s = self.args[0]
        return sympy.exp(s - LSE(sympy.Integer(0), s) - self)


_UFUNCS = {np.exp: sympy.exp, np.log: sympy.log, np.log10: lambda v: sympy.log(v) / sympy.log(10),
           np.log1p: lambda v: sympy.log(1 + v), np.sqrt: sympy.sqrt, np.negative: operator.neg,
           np.positive: operator.pos, np.add: operator.add, np.subtract: operator.sub,
           np.multiply: operator.mul, np.true_divide: operator.truediv, np.power: operator.pow}


def _expr(value):
    if isinstance(value, Tracer):
        return value.expr
    if isinstance(value, (int, float, np.floating, np.integer)) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return sympy.Float(float(value)) if not float(value).is_integer() else sympy.Integer(int(value))
    raise TypeError(f"a traced formula met a {type(value).__name__}: only scalars and symbols are traced")


class Tracer:
    """A sympy expression that numpy's ufuncs and Python's arithmetic build on (the symbolic twin of `Dual`)."""

    __array_priority__ = 1001

    def __init__(self, expr):
        self.expr = expr

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or kwargs or ufunc not in _UFUNCS:
            raise TypeError(f"cannot trace numpy.{ufunc.__name__}.{method}")
        return Tracer(_UFUNCS[ufunc](*[_expr(v) for v in inputs]))

    def _op(self, other, op, reflected=False):
        a, b = _expr(self), _expr(other)
        return Tracer(op(b, a) if reflected else op(a, b))

    def __add__(self, o): return self._op(o, operator.add)
    def __radd__(self, o): return self._op(o, operator.add, True)
    def __sub__(self, o): return self._op(o, operator.sub)
    def __rsub__(self, o): return self._op(o, operator.sub, True)
    def __mul__(self, o): return self._op(o, operator.mul)
    def __rmul__(self, o): return self._op(o, operator.mul, True)
    def __truediv__(self, o): return self._op(o, operator.truediv)
    def __rtruediv__(self, o): return self._op(o, operator.truediv, True)
    def __pow__(self, o): return self._op(o, operator.pow)
    def __rpow__(self, o): return self._op(o, operator.pow, True)
    def __neg__(self): return Tracer(-self.expr)
    def __pos__(self): return self

    def __bool__(self):
        raise TypeError("a traced formula branches on a value")

    # the helpers of caplab.stats.dual hand their arguments here when one of them is traced
    @staticmethod
    def lse(*terms):
        return Tracer(LSE(*[_expr(t) for t in terms]))

    @staticmethod
    def log_softplus(s):
        return Tracer(LogSoftplus(_expr(s)))


def _numpy_lse(first, *rest):
    """log(sum(exp(t))) by numpy's stable logaddexp, one term at a time (equal to `dual.lse` within rounding)."""
    total = first
    for term in rest:
        total = np.logaddexp(total, term)
    return total


def _numpy_log_softplus(s):
    """log(log(1 + e^s)) as `dual.log_softplus` computes it: max(s, 0) + log1p(e^-|s|), then its log."""
    return np.log(np.maximum(s, 0.0) + np.log1p(np.exp(-np.abs(s))))


_NAMESPACE = {"LSE": _numpy_lse, "LogSoftplus": _numpy_log_softplus}


class Compiled:
    """f(inputs, params) -> (value (n,), gradient (k, n) w.r.t. the natural values of `free`)."""

    def __init__(self, fn, inputs: Sequence[str], params: Sequence[str], free: Sequence[str]):
        self.fn, self.inputs, self.params, self.free = fn, tuple(inputs), tuple(params), tuple(free)

    def __call__(self, x, p):
        """Inputs {name: array (n,)}, parameters {name: float}."""
        columns = [x[name] for name in self.inputs]
        out = self.fn(*columns, *[p[name] for name in self.params])
        n = len(columns[0]) if columns else 1
        value = out[0] if np.shape(out[0]) == (n,) else np.broadcast_to(out[0], (n,))
        grad = np.empty((len(self.free), n))
        for row, g in zip(grad, out[1:]):
            row[...] = g
        return value, grad


@functools.lru_cache(maxsize=256)
def _compile(fn, inputs: tuple[str, ...], positive: tuple[str, ...], params: tuple[str, ...],
             free: tuple[str, ...]):
    x = {name: Tracer(sympy.Symbol(f"x_{i}", positive=True) if name in positive else sympy.Symbol(f"x_{i}", real=True))
         for i, name in enumerate(inputs)}
    p = {name: Tracer(sympy.Symbol(f"p_{i}", real=True)) for i, name in enumerate(params)}
    try:
        with np.errstate(all="ignore"):
            out = fn(x, p)
        expr = _expr(out)
    except Exception:  # noqa: BLE001  (anything the tracer cannot follow: the fitter uses dual numbers instead)
        return None
    grads = [sympy.diff(expr, p[name].expr) for name in free]
    symbols = [x[n].expr for n in inputs] + [p[n].expr for n in params]
    function = sympy.lambdify(symbols, [expr, *grads], modules=[_NAMESPACE, "numpy"], cse=True)
    return Compiled(function, inputs, params, free)


def compile_law(law, free: Sequence[str]) -> Compiled | None:
    """The compiled value-and-gradient of `law` w.r.t. the parameters named in `free` (others are passed in as
    fixed numbers), or None where the formula cannot be traced. Cached per formula and free set."""
    return _compile(law.fn, tuple(law.inputs), tuple(law.positive_inputs), tuple(law.param_names), tuple(free))
