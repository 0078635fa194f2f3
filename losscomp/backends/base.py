"""What every backend printer shares: vectorized Piecewise, binary max/min, the language's own
functions, and dtype-neutral constants.

A backend is one of SymPy's array printers plus this mixin and three tables: `FUNCTIONS` (how to
print each elementwise function), `HELPERS` (small private functions some prints rely on) and the
module pieces in its `Backend` object. Output never depends on the installed framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import sympy
from sympy import S
from sympy.core.mul import _keep_coeff
from sympy.printing.precedence import PRECEDENCE



# Helper source that the NumPy and PyTorch module templates share word for word.
AXES_HELPER = '''def _axes(ndim, axis):
    """The axes a reduction spans: all but the batch axis ('sample'), every axis ('all'), or one."""
    if axis == "sample":
        return tuple(range(1, ndim))
    if axis == "all":
        return tuple(range(ndim))
    return (ndim + axis,)
'''


class ArrayPrinterMixin:
    """Put before a SymPy array printer: `class P(ArrayPrinterMixin, NumPyPrinter)`.

    `tensors` are the names bound to arrays in the function being printed; `reference` is one of
    them (a target) whose dtype a tensor made only of constants must take.
    """

    ALIAS: str = ""                  # 'np', 'torch', 'tf'
    MODULE: str = ""                 # what `ALIAS` is imported from
    # language function -> format with {0}, {1}, ... and {m} for ALIAS; a backend overrides what differs
    FUNCTIONS: Mapping[str, str] = {
        **{name: "{m}.%s({0})" % name for name in (
            "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "sinh", "cosh", "abs", "sign",
            "sigmoid", "erf", "lgamma", "digamma")},
        "maximum": "{m}.maximum({0}, {1})", "minimum": "{m}.minimum({0}, {1})",
        "relu": "{m}.relu({0})", "clip": "{m}.minimum({m}.maximum({0}, {1}), {2})",
        "xlogy": "{m}.xlogy({0}, {1})", "softplus": "_softplus({0})",
    }
    WHERE = "{m}.where({0}, {1}, {2})"
    FILL_LIKE = "{m}.asarray({1}, dtype={0}.dtype)"  # the scalar {1} with the dtype of {0}, no shape
    SCALAR_BRANCH: str | None = None       # for frameworks whose where() will not convert a scalar
    LOGICAL = {"And": "{m}.logical_and", "Or": "{m}.logical_or", "Not": "{m}.logical_not"}

    SETTINGS: Mapping[str, object] = {}  # extra settings of the SymPy printer (pinned framework versions)

    def __init__(self, tensors=(), reference: str | None = None):
        super().__init__({"fully_qualified_modules": True, "strict": True, "allow_unknown_functions": False,
                          **self.SETTINGS})
        self.tensors = set(tensors)
        self.reference = reference
        self.helpers_used: set[str] = set()
        self.uses_math = False

    # Functions of constants and parameters only: Python's own, so no tensor is made from a scalar.
    SCALAR_FUNCTIONS = {
        "exp": "math.exp({0})", "log": "math.log({0})", "log1p": "math.log1p({0})", "expm1": "math.expm1({0})",
        "sqrt": "math.sqrt({0})", "sin": "math.sin({0})", "cos": "math.cos({0})", "tanh": "math.tanh({0})",
        "sinh": "math.sinh({0})", "cosh": "math.cosh({0})", "abs": "abs({0})", "erf": "math.erf({0})",
        "lgamma": "math.lgamma({0})", "maximum": "max({0}, {1})", "minimum": "min({0}, {1})",
        "relu": "max({0}, 0)", "clip": "min(max({0}, {1}), {2})", "sign": "(({0} > 0) - ({0} < 0))",
        "xlogy": "(0.0 if {0} == 0 else {0}*math.log({1}))",
        "sigmoid": "(1/(1 + math.exp(-({0}))))", "softplus": "(max({0}, 0) + math.log1p(math.exp(-abs({0}))))",
    }

    # -- names ---------------------------------------------------------------------------------
    def _call(self, key: str, *args: sympy.Basic) -> str:
        if key in self.SCALAR_FUNCTIONS and not any(self._is_tensor(a) for a in args):
            template = self.SCALAR_FUNCTIONS[key]
            if "math." in template:
                self.uses_math = True
            return template.format(*(self._print(a) for a in args))
        template = self.FUNCTIONS[key]
        if template.startswith("_"):
            self.helpers_used.add(template.split("(", 1)[0])
        return template.format(*(self._print(a) for a in args), m=self.ALIAS)

    def _is_tensor(self, expr: sympy.Basic) -> bool:
        return any(s.name in self.tensors for s in expr.free_symbols)

    # -- elementwise functions -----------------------------------------------------------------
    def _print_exp(self, expr):
        if expr.args[0] == 1:
            self.uses_math = True
            return "math.e"
        return self._call("exp", expr.args[0])

    def _print_log(self, expr):
        return self._call("log", expr.args[0])

    def _print_log1p(self, expr):
        return self._call("log1p", expr.args[0])

    def _print_expm1(self, expr):
        return self._call("expm1", expr.args[0])

    def _fn(name):  # noqa: N805 - builds the one-line printers below
        def method(self, expr):
            return self._call(name, *expr.args)
        return method

    _print_sin, _print_cos = _fn("sin"), _fn("cos")
    _print_tanh, _print_sinh, _print_cosh = _fn("tanh"), _fn("sinh"), _fn("cosh")
    _print_Abs, _print_sign = _fn("abs"), _fn("sign")
    _print_erf, _print_loggamma = _fn("erf"), _fn("lgamma")
    _print_sigmoid, _print_softplus, _print_relu, _print_clip = _fn("sigmoid"), _fn("softplus"), _fn("relu"), _fn("clip")
    del _fn

    def _print_root(self, expr):
        return self._call("sqrt", expr.args[0])

    def _print_xlogy(self, expr):
        return self._call("xlogy", *expr.args)

    def _print_onehot(self, expr):
        # index labels against the class axis of the reference (the target scores)
        self.helpers_used.add("_onehot")
        return f"_onehot({self._print(expr.args[0])}, {self.reference})"

    def _print_polygamma(self, expr):
        order, x = expr.args
        if order != 0:
            raise NotImplementedError("only polygamma(0, x) (digamma) is emitted")
        return self._call("digamma", x)

    def _fold(self, key: str, args) -> str:
        # tensors first: some frameworks convert a leading Python number to an integer tensor
        args = sorted(args, key=lambda a: not self._is_tensor(a))
        if not any(self._is_tensor(a) for a in args):
            return f"{'max' if key == 'maximum' else 'min'}({', '.join(self._print(a) for a in args)})"
        text = self._print(args[0])
        for arg in args[1:]:
            text = self.FUNCTIONS[key].format(text, self._print(arg), m=self.ALIAS)
        return text

    def _print_Max(self, expr):
        return self._fold("maximum", expr.args)

    def _print_Min(self, expr):
        return self._fold("minimum", expr.args)

    # -- arithmetic and constants --------------------------------------------------------------
    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.args
        if exponent == S.Half:
            return self._call("sqrt", base)
        if exponent == -S.Half:
            return f"1/{self._call('sqrt', base)}"
        pow_prec = PRECEDENCE["Pow"]
        if exponent == -1:
            return f"1/{self.parenthesize(base, pow_prec)}"
        if exponent.is_Integer and exponent < 0:
            return f"1/{self.parenthesize(base, pow_prec)}**{-exponent}"
        # Python's ** works on arrays and tensors of every backend; the exponent stays a Python number.
        return f"{self.parenthesize(base, pow_prec, strict=True)}**{self.parenthesize(exponent, pow_prec, strict=True)}"

    def _print_Mul(self, expr):
        """Denominators as successive divisions: y/p**2 prints y/p/p, so y = 0 gives 0 even where p**2
        underflows, and nothing overflows that the true value does not."""
        original = expr
        c, rest = expr.as_coeff_Mul()
        sign = ""
        if c < 0:
            expr, sign = _keep_coeff(-c, rest), "-"
        numerator, denominator = [], []
        for factor in expr.as_ordered_factors():
            if factor.is_Pow and factor.exp.is_Rational and factor.exp.is_negative:
                power = -factor.exp
                if power.is_Integer and power <= 4:
                    denominator.extend([factor.base] * int(power))
                else:
                    denominator.append(sympy.Pow(factor.base, power, evaluate=False))
            else:
                numerator.append(factor)
        if not denominator:
            return super()._print_Mul(original)
        prec = PRECEDENCE["Mul"]
        if len(numerator) == 1 and sign:
            top = self.parenthesize(numerator[0], 0.5 * (PRECEDENCE["Pow"] + PRECEDENCE["Mul"]))
        else:
            top = "*".join(self.parenthesize(f, prec) for f in numerator) if numerator else "1"
        return sign + top + "".join("/" + self.parenthesize(d, prec, strict=True) for d in denominator)

    def _print_Rational(self, expr):
        return f"{expr.p}/{expr.q}"

    def _print_Half(self, expr):
        return "1/2"

    def _print_Pi(self, expr):
        self.uses_math = True
        return "math.pi"

    def _print_Exp1(self, expr):
        self.uses_math = True
        return "math.e"

    # -- conditions ----------------------------------------------------------------------------
    def _print_Relational(self, expr):
        op = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}[expr.rel_op]
        return f"({self._print(expr.lhs)} {op} {self._print(expr.rhs)})"

    def _logical(self, name: str, args) -> str:
        fn = self.LOGICAL[name].format(m=self.ALIAS)
        text = self._print(args[0])
        for arg in args[1:]:
            text = f"{fn}({text}, {self._print(arg)})"
        return text

    def _print_And(self, expr):
        return self._logical("And", list(expr.args))

    def _print_Or(self, expr):
        return self._logical("Or", list(expr.args))

    def _print_Not(self, expr):
        return f"{self.LOGICAL['Not'].format(m=self.ALIAS)}({self._print(expr.args[0])})"

    def _print_BooleanTrue(self, expr):
        return "True"

    def _print_BooleanFalse(self, expr):
        return "False"

    # -- Piecewise: nested where ---------------------------------------------------------------
    def _print_Piecewise(self, expr):
        pieces = list(expr.args)
        if pieces[-1].cond != S.true:
            # The language builds exhaustive Piecewise; a non-exhaustive one keeps its last value.
            pieces[-1] = sympy.functions.elementary.piecewise.ExprCondPair(pieces[-1].expr, S.true)
        # where() of scalars alone would take the framework's default dtype, not the inputs':
        # at each level whose two values are both scalars, fill one like the reference tensor.
        text, tail_is_tensor = None, False
        for value, cond in reversed(pieces):
            printed = self._print(value)
            is_tensor = self._is_tensor(value)
            if text is None:
                text, tail_is_tensor = printed, is_tensor
                continue
            if not (is_tensor or tail_is_tensor) and self.reference:
                printed = self.FILL_LIKE.format(self.reference, printed, m=self.ALIAS)
                is_tensor = True
            elif self.SCALAR_BRANCH and self.reference:
                printed = printed if is_tensor else self.SCALAR_BRANCH.format(self.reference, printed, m=self.ALIAS)
                if not tail_is_tensor:
                    text = self.SCALAR_BRANCH.format(self.reference, text, m=self.ALIAS)
            text = self.WHERE.format(self._print(cond), printed, text, m=self.ALIAS)
            tail_is_tensor = tail_is_tensor or is_tensor
        return text

    def _module_format(self, fqn, register=True):
        if fqn.startswith(self.MODULE + "."):
            return self.ALIAS + fqn[len(self.MODULE):]
        return super()._module_format(fqn, register)


@dataclass(frozen=True)
class Backend:
    """One target framework: its printer and the pieces of its module template (see `emit`)."""

    name: str
    printer: Callable[..., ArrayPrinterMixin]
    imports: tuple[str, ...]                    # import lines of the emitted module
    helpers: Mapping[str, str]                  # private helper name -> source
    reductions: Mapping[str, str]               # reduction -> source of _reduce and _to_target
    extras: Callable[..., str]                  # framework classes (autograd Function, Keras Loss)
    notes: tuple[str, ...] = field(default=())  # lines for the module header
