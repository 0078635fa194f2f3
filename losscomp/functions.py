"""SymPy functions the language needs that SymPy lacks, each with its derivative rule beside it.

Keeping `sigmoid` and `softplus` as functions (not expanded into exp) keeps derivatives compact and
stable: softplus' = sigmoid, sigmoid' = sigmoid (1 - sigmoid), with no exp(z)/(1 + exp(z)) to overflow.

The non-smooth functions carry the kink convention (PyTorch's) in their derivative rules, so that a
derivative is as small as the function it comes from, whatever is nested in what:

    relu'(x) = step(x, 0)                  step(x, h): 1 for x > 0, 0 for x < 0, h at 0
    clip(x, lo, hi)' = step(x - lo, 1) step(hi - x, 1) by x (passes at the bounds)
    absval'(x) = sgn(x)                    sgn'(x) = 0, step' = 0 (no DiracDelta, ever)
    max2(a, b) = step(a - b, 1/2) a' + step(b - a, 1/2) b'   (a tie splits 0.5/0.5; min2 likewise)

`losscomp.canonical` puts absval, sgn, max2 and min2 in place of SymPy's Abs, sign, Max and Min before
differentiating (SymPy's own give DiracDelta and Heaviside), and `raise_kinks` turns the results back.
"""

from __future__ import annotations

import sympy
from sympy import Function, S, exp, log
from mpmath.libmp import prec_to_dps


def _real_evalf(expr: sympy.Expr, real: bool, prec: int) -> sympy.Expr:
    """evalf with guard digits; a real function of a real argument drops evalf's imaginary noise."""
    dps = prec_to_dps(prec)
    value = expr.evalf(dps + 10)
    if real:
        value = sympy.re(value)
    return value.evalf(dps)


class sigmoid(Function):  # noqa: N801 - printed by name
    """sigmoid(x) = 1 / (1 + exp(-x));  sigmoid'(x) = sigmoid(x) (1 - sigmoid(x))."""

    nargs = 1

    @classmethod
    def eval(cls, x):  # safe: SymPy's automatic-simplification hook, not Python's eval
        if x.is_zero:
            return S.Half

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + exp(-x))

    def _eval_evalf(self, prec):
        return _real_evalf(self.rewrite(exp), bool(self.args[0].is_real), prec)

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return True if self.args[0].is_real else None

    def _latex(self, printer):
        return r"\sigma\left(%s\right)" % printer._print(self.args[0])


class softplus(Function):  # noqa: N801
    """softplus(x) = log(1 + exp(x));  softplus'(x) = sigmoid(x)."""

    nargs = 1

    @classmethod
    def eval(cls, x):  # safe: SymPy's automatic-simplification hook, not Python's eval
        if x.is_zero:
            return log(2)

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return log(1 + exp(x))

    def _eval_evalf(self, prec):
        return _real_evalf(self.rewrite(exp), bool(self.args[0].is_real), prec)

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return True if self.args[0].is_real else None

    def _latex(self, printer):
        return r"\operatorname{softplus}\left(%s\right)" % printer._print(self.args[0])


class step(Function):  # noqa: N801
    """step(x, h) = 1 for x > 0, 0 for x < 0, h at x = 0 (the derivative of a kink); step' = 0."""

    nargs = 2

    @classmethod
    def eval(cls, x, h):  # safe: SymPy's automatic-simplification hook, not Python's eval
        if x.is_positive:
            return S.One
        if x.is_negative:
            return S.Zero
        if x.is_zero:
            return h

    def fdiff(self, argindex=1):
        return S.Zero

    def as_piecewise(self):
        x, h = self.args
        return sympy.Piecewise((1, x > 0), (0, x < 0), (h, True))

    def _eval_evalf(self, prec):
        return self.as_piecewise().evalf(prec_to_dps(prec))

    def _eval_is_real(self):
        return True


class sgn(Function):  # noqa: N801
    """sign(x) for differentiation: sgn' = 0 (SymPy's sign has a DiracDelta)."""

    nargs = 1

    @classmethod
    def eval(cls, x):  # safe: SymPy's automatic-simplification hook, not Python's eval
        value = sympy.sign(x)
        if value.is_number:
            return value
        if x.could_extract_minus_sign():
            return -cls(-x)

    def fdiff(self, argindex=1):
        return S.Zero

    def _eval_is_real(self):
        return True


class absval(Function):  # noqa: N801
    """|x| for differentiation: absval' = sgn, so abs'(0) = 0."""

    nargs = 1

    @classmethod
    def eval(cls, x):  # safe: SymPy's automatic-simplification hook, not Python's eval
        if x.is_nonnegative:
            return x
        if x.is_nonpositive:
            return -x
        if x.could_extract_minus_sign():
            return cls(-x)

    def fdiff(self, argindex=1):
        return sgn(self.args[0])

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_nonnegative(self):
        return True if self.args[0].is_real else None


def difference(a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    """a - b in its shorter form, so max(tau*e, (tau-1)*e) compares on `e`."""
    d = a - b
    expanded = sympy.expand(d)
    return expanded if sympy.count_ops(expanded) <= sympy.count_ops(d) else d


class max2(Function):  # noqa: N801
    """max(a, b) for differentiation (binary, so an n-ary max folds pairwise as the frameworks do):
    the gradient goes to the larger argument, half to each at a tie."""

    nargs = 2

    def fdiff(self, argindex=1):
        a, b = self.args
        return step(difference(a, b), S.Half) if argindex == 1 else step(difference(b, a), S.Half)

    def _eval_is_real(self):
        return all(a.is_real for a in self.args) or None


class min2(Function):  # noqa: N801
    """min(a, b) for differentiation: the gradient goes to the smaller argument, half to each at a tie."""

    nargs = 2

    def fdiff(self, argindex=1):
        a, b = self.args
        return step(difference(b, a), S.Half) if argindex == 1 else step(difference(a, b), S.Half)

    def _eval_is_real(self):
        return all(a.is_real for a in self.args) or None


class relu(Function):  # noqa: N801
    """relu(x) = max(x, 0), with relu'(0) = 0."""

    nargs = 1

    def fdiff(self, argindex=1):
        return step(self.args[0], S.Zero)

    @classmethod
    def eval(cls, x):  # safe: SymPy's automatic-simplification hook, not Python's eval
        if x.is_nonnegative:
            return x
        if x.is_nonpositive:
            return S.Zero

    def _eval_rewrite_as_Piecewise(self, x, **kwargs):
        return sympy.Piecewise((x, x > 0), (0, True))

    def _eval_evalf(self, prec):
        x = self.args[0].evalf(prec_to_dps(prec))
        return x if x > 0 else sympy.Float(0)

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_nonnegative(self):
        return True if self.args[0].is_real else None


class clip(Function):  # noqa: N801
    """clip(x, lo, hi) = min(max(x, lo), hi); the gradient passes at the bounds (lowered by `canonical`)."""

    nargs = 3

    @classmethod
    def eval(cls, x, lo, hi):  # safe: SymPy's automatic-simplification hook, not Python's eval
        # clip(-x, lo, hi) = -clip(x, -hi, -lo): one canonical sign, so -clip(e) and clip(-e) are shared
        if x.could_extract_minus_sign():
            return -cls(-x, -hi, -lo)

    def fdiff(self, argindex=1):
        x, lo, hi = self.args
        if argindex == 1:  # 1 on [lo, hi], the bounds included
            return step(x - lo, S.One) * step(hi - x, S.One)
        if argindex == 2:  # below lo the value is lo
            return step(lo - x, S.Zero)
        return step(x - hi, S.Zero)

    def _eval_rewrite_as_Piecewise(self, x, lo, hi, **kwargs):
        return sympy.Piecewise((lo, x < lo), (hi, x > hi), (x, True))

    def _eval_evalf(self, prec):
        x, lo, hi = (a.evalf(prec_to_dps(prec)) for a in self.args)
        return lo if x < lo else (hi if x > hi else x)

    def _eval_is_real(self):
        return all(a.is_real for a in self.args) or None


class onehot(Function):  # noqa: N801
    """onehot(y): 1 where the class axis index equals the label y, else 0; constant in every input."""

    nargs = 1

    def fdiff(self, argindex=1):
        return S.Zero

    def _eval_is_real(self):
        return True

    def _eval_is_nonnegative(self):
        return True


class xlogy(Function):  # noqa: N801
    """xlogy(x, y) = x log(y), and 0 where x = 0 (so 0 log 0 = 0, the limit of x log x).

    d/dx = log(y), d/dy = x / y.
    """

    nargs = 2

    def fdiff(self, argindex=1):
        x, y = self.args
        return log(y) if argindex == 1 else x / y

    def _eval_rewrite_as_log(self, x, y, **kwargs):
        return x * log(y)

    def _eval_evalf(self, prec):
        x, y = self.args
        if x.is_zero or (x.is_number and x.evalf(prec_to_dps(prec)) == 0):
            return sympy.Float(0, precision=prec)
        return (x * log(y)).evalf(prec_to_dps(prec))

    def _eval_is_real(self):
        return True if self.args[1].is_nonnegative and self.args[0].is_real else None

    def _latex(self, printer):
        return r"%s \log\left(%s\right)" % (printer.parenthesize(self.args[0], 50), printer._print(self.args[1]))


class root(Function):  # noqa: N801
    """sqrt(u) for differentiation: root'(u) = 1 / (2 root(u)) for u > 0, and the subgradient 0 at u = 0
    (as the norm of a zero vector has), never an infinity. `canonical` puts it in place of sqrt."""

    nargs = 1

    def fdiff(self, argindex=1):
        u = self.args[0]
        return sympy.Piecewise((1 / (2 * root(u)), u > 0), (0, True))

    def _eval_rewrite_as_Pow(self, u, **kwargs):
        return sympy.sqrt(u)

    def _eval_evalf(self, prec):
        return sympy.sqrt(self.args[0]).evalf(prec_to_dps(prec))

    def _eval_is_nonnegative(self):
        return True if self.args[0].is_nonnegative else None

    def _eval_is_real(self):
        return True if self.args[0].is_nonnegative else None


CUSTOM_FUNCTIONS = (sigmoid, softplus, relu, clip, onehot, xlogy, root, step, sgn, absval, max2, min2)
