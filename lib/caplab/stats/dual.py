"""Dual numbers: exact forward-mode gradients of law formulas written with plain numpy.

A `Dual` carries a value array and its gradient with respect to k parameters (shape (k,) + value's shape). Law
formulas receive Duals for the parameters being fitted and use ordinary arithmetic and numpy ufuncs (exp, log,
log10, log1p, sqrt, power); `lse`, `log_softplus` and `where` below also accept them. One evaluation gives the
value and the full gradient in real arithmetic (about 3-5 times the cost of the value alone for k ~ 9), which is
what makes a 9-parameter multi-start fit take seconds. A formula using anything else raises TypeError, and the
fitter falls back to finite differences.
"""
from __future__ import annotations

import numpy as np


def value_of(x):
    """The value of a Dual, or the array itself."""
    return x.value if isinstance(x, Dual) else np.asarray(x)


def _grad(x, ndim):
    """The gradient of x with its value axes padded on the left to `ndim` (None for a constant)."""
    if not isinstance(x, Dual):
        return None
    g, missing = x.grad, ndim - x.value.ndim
    return g.reshape(g.shape[:1] + (1,) * missing + g.shape[1:]) if missing > 0 else g


def _combine(value, *terms):
    """Dual(value, sum of gradient terms), dropping constant (None) terms."""
    terms = [t for t in terms if t is not None]
    if not terms:
        return value
    grad = terms[0]
    for t in terms[1:]:
        grad = grad + t
    return Dual(value, grad)


def _binary(op, a, b):
    va, vb = value_of(a), value_of(b)
    nd = max(va.ndim, vb.ndim)
    ga, gb = _grad(a, nd), _grad(b, nd)
    if op is np.add:
        return _combine(va + vb, ga, gb)
    if op is np.subtract:
        return _combine(va - vb, ga, None if gb is None else -gb)
    if op is np.multiply:
        return _combine(va * vb, None if ga is None else ga * vb, None if gb is None else gb * va)
    if op is np.true_divide:
        out = va / vb
        return _combine(out, None if ga is None else ga / vb, None if gb is None else -gb * (out / vb))
    if op is np.power:
        out = va ** vb
        da = None if ga is None else ga * (vb * va ** (vb - 1))
        db = None if gb is None else gb * (out * np.log(va))
        return _combine(out, da, db)
    raise TypeError(f"Dual does not support {op.__name__}")


_UNARY = {  # ufunc -> (value, derivative of value w.r.t. its argument)
    np.exp: lambda v: (np.exp(v),) * 2,
    np.log: lambda v: (np.log(v), 1.0 / v),
    np.log10: lambda v: (np.log10(v), 1.0 / (v * np.log(10.0))),
    np.log1p: lambda v: (np.log1p(v), 1.0 / (1.0 + v)),
    np.sqrt: lambda v: (np.sqrt(v), 0.5 / np.sqrt(v)),
    np.negative: lambda v: (-v, -1.0),
    np.positive: lambda v: (v, 1.0),
}


class Dual:
    """A value array with its gradient w.r.t. k parameters; supports arithmetic and the ufuncs of `_UNARY`."""

    __array_priority__ = 1000

    def __init__(self, value, grad):
        self.value = np.asarray(value, dtype=float)
        self.grad = np.asarray(grad, dtype=float)

    @classmethod
    def seed(cls, value, k: int, index: int, scale=1.0):
        """The Dual of parameter `index` of k, value `value`, d value / d theta_index = scale."""
        grad = np.zeros((k,) + np.shape(value))
        grad[index] = scale
        return cls(value, grad)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or kwargs:
            raise TypeError(f"Dual does not support {ufunc.__name__}.{method} with {sorted(kwargs)}")
        if len(inputs) == 2:
            return _binary(ufunc, *inputs)
        if ufunc in _UNARY:
            value, slope = _UNARY[ufunc](inputs[0].value)
            return Dual(value, inputs[0].grad * slope)
        raise TypeError(f"Dual does not support numpy.{ufunc.__name__}")

    def __add__(self, other): return _binary(np.add, self, other)
    def __radd__(self, other): return _binary(np.add, other, self)
    def __sub__(self, other): return _binary(np.subtract, self, other)
    def __rsub__(self, other): return _binary(np.subtract, other, self)
    def __mul__(self, other): return _binary(np.multiply, self, other)
    def __rmul__(self, other): return _binary(np.multiply, other, self)
    def __truediv__(self, other): return _binary(np.true_divide, self, other)
    def __rtruediv__(self, other): return _binary(np.true_divide, other, self)
    def __pow__(self, other): return _binary(np.power, self, other)
    def __rpow__(self, other): return _binary(np.power, other, self)
    def __neg__(self): return Dual(-self.value, -self.grad)

    @property
    def shape(self):
        return self.value.shape


def where(condition, a, b):
    """np.where for arrays or Duals (the gradient follows the chosen branch)."""
    va, vb = value_of(a), value_of(b)
    value = np.where(condition, va, vb)
    ga, gb = _grad(a, value.ndim), _grad(b, value.ndim)
    if ga is None and gb is None:
        return value
    ga = np.zeros((1,) + va.shape) if ga is None else ga
    gb = np.zeros((1,) + vb.shape) if gb is None else gb
    return Dual(value, np.where(condition, ga, gb))


def _traced(args):
    """The first argument that is a symbolic trace (`caplab.stats.symbolic.Tracer`), or None."""
    return next((a for a in args if hasattr(a, "log_softplus") and hasattr(a, "expr")), None)


def lse(*terms):
    """log(sum(exp(t))) of broadcastable arrays or Duals, shifted by the largest value (no overflow)."""
    if (tracer := _traced(terms)) is not None:
        return tracer.lse(*terms)
    values = np.broadcast_arrays(*[value_of(t) for t in terms])
    shift = np.max(np.stack(values), axis=0)
    total = np.exp(terms[0] - shift)
    for t in terms[1:]:
        total = total + np.exp(t - shift)
    return np.log(total) + shift


def log_softplus(s):
    """log(log(1 + e^s)): accurate for very negative s (where it is ~ s) and for large s (~ log s)."""
    if _traced([s]) is not None:
        return s.log_softplus(s)
    positive = value_of(s) > 0
    tail = np.exp(where(positive, -s, s))  # exponent <= 0: no overflow
    return np.log(where(positive, s, 0.0) + np.log1p(tail))
