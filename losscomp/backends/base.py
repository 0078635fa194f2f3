"""What every backend shares: printing one statement of `losscomp.schedule` as one line of code, and
printing the scalar and constant expressions that stay inline.

A backend is a printer class (a SymPy array printer with this mixin) plus tables:

- `CALLS`: how each array function is called, `$m.exp({0})`; `$name` is a global of the module
  (the framework alias `$m`, a helper `$_softplus`), resolved through the module's `Namespace` so that
  no user name can shadow it;
- `CALLS_OUT` and `ARITH_OUT`: the `out=` forms, for statements that write into a dead temporary;
- helpers (module-level functions some statements call), and the module pieces in `Backend`.

Output never depends on the installed framework.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Mapping

import sympy
from sympy import S
from sympy.core.mul import _keep_coeff
from sympy.printing.precedence import PRECEDENCE

from ..naming import Namespace, is_internal
from ..schedule import ARRAY, SCALAR, Kind, Statement

_GLOBAL = re.compile(r"\$(\w+)")


class ArrayPrinterMixin:
    """Put before a SymPy array printer: `class P(ArrayPrinterMixin, NumPyPrinter)`."""

    ALIAS: str = ""                  # 'np', 'torch', 'tf'
    MODULE: str = ""                 # what ALIAS is imported from
    TENSOR_SCALARS = False           # parameters are 0-d tensors (torch, TF), not Python numbers (NumPy)
    CALLS: Mapping[str, str] = {
        **{name: "$m.%s({0})" % name for name in (
            "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "sinh", "cosh", "abs", "sign",
            "sigmoid", "erf", "lgamma", "digamma")},
        "maximum": "$m.maximum({0}, {1})", "minimum": "$m.minimum({0}, {1})",
        "relu": "$m.maximum({0}, 0)", "clip": "$m.minimum($m.maximum({0}, {1}), {2})",
        "xlogy": "$m.xlogy({0}, {1})", "softplus": "$_softplus({0})", "root": "$m.sqrt({0})",
        "polygamma": "$m.polygamma({0}, {1})",
    }
    CALLS_OUT: Mapping[str, str] = {}
    ARITH_OUT: Mapping[str, str] = {}
    WHERE = "$m.where({0}, {1}, {2})"
    FILL_LIKE = "$m.asarray({1}, dtype={0}.dtype)"  # the number {1} as a 0-d array of {0}'s dtype
    LOGICAL = {"and": "$m.logical_and({0}, {1})", "or": "$m.logical_or({0}, {1})", "not": "$m.logical_not({0})"}

    SETTINGS: Mapping[str, object] = {}  # extra settings of the SymPy printer (pinned framework versions)

    # Inline functions of constants (and, in NumPy, of parameters): Python's own, so no array is made.
    SCALAR_FUNCTIONS = {
        "exp": "$math.exp({0})", "log": "$math.log({0})", "log1p": "$math.log1p({0})",
        "expm1": "$math.expm1({0})", "sqrt": "$math.sqrt({0})", "sin": "$math.sin({0})", "cos": "$math.cos({0})",
        "tanh": "$math.tanh({0})", "sinh": "$math.sinh({0})", "cosh": "$math.cosh({0})", "abs": "abs({0})",
        "erf": "$math.erf({0})", "lgamma": "$math.lgamma({0})", "maximum": "max({0}, {1})",
        "minimum": "min({0}, {1})", "relu": "max({0}, 0)", "clip": "min(max({0}, {1}), {2})",
        "sign": "(({0} > 0) - ({0} < 0))", "xlogy": "(0.0 if {0} == 0 else {0}*$math.log({1}))",
        "sigmoid": "(1/(1 + $math.exp(-({0}))))",
        "softplus": "(max({0}, 0) + $math.log1p($math.exp(-abs({0}))))", "root": "$math.sqrt({0})",
    }

    def __init__(self, namespace: Namespace, names: Mapping[sympy.Symbol, str] | None = None,
                 kinds: Mapping[sympy.Symbol, Kind] | None = None, reference: str | None = None):
        super().__init__({"fully_qualified_modules": True, "strict": True, "allow_unknown_functions": False,
                          **self.SETTINGS})
        self.ns = namespace
        self.names = dict(names or {})
        self.kinds = dict(kinds or {})
        self.reference = reference

    # -- globals -------------------------------------------------------------------------------
    def g(self, template: str) -> str:
        """A template with its `$globals` resolved (`$m` is the framework alias)."""
        def resolve(match):
            name = match.group(1)
            return self.ns.glob(self.ALIAS if name == "m" else name)
        return _GLOBAL.sub(resolve, template)

    def fill(self, template: str, *args: str, **named: str) -> str:
        return self.g(template).format(*args, **named)

    # -- inline expressions (scalars and constants) ----------------------------------------------
    name_of: Callable[[sympy.Symbol], str] | None = None  # set by the emitter: the names of one function

    def _print_Symbol(self, expr):
        if expr in self.names:
            return self.names[expr]
        if is_internal(expr.name):
            if self.name_of is None:
                raise KeyError(f"no name for the internal symbol {expr.name}")  # pragma: no cover - an emitter bug
            return self.name_of(expr)
        return expr.name

    def _is_tensor(self, expr: sympy.Basic) -> bool:
        """Printed with the framework's functions: arrays, and parameters where they are 0-d tensors."""
        for symbol in expr.free_symbols:
            kind = self.kinds.get(symbol)
            if kind is not None and (kind.what == ARRAY or (kind.what == SCALAR and self.TENSOR_SCALARS)):
                return True
        return False

    def _call(self, key: str, *args: sympy.Basic) -> str:
        printed = [self._print(a) for a in args]
        if key in self.SCALAR_FUNCTIONS and not any(self._is_tensor(a) for a in args):
            return self.fill(self.SCALAR_FUNCTIONS[key], *printed)
        return self.fill(self.CALLS[key], *printed)

    def _print_exp(self, expr):
        if expr.args[0] == 1:
            return self.g("$math.e")
        return self._call("exp", expr.args[0])

    def _fn(name):  # noqa: N805 - builds the one-line printers below
        def method(self, expr):
            return self._call(name, *expr.args)
        return method

    _print_log, _print_log1p, _print_expm1 = _fn("log"), _fn("log1p"), _fn("expm1")
    _print_sin, _print_cos = _fn("sin"), _fn("cos")
    _print_tanh, _print_sinh, _print_cosh = _fn("tanh"), _fn("sinh"), _fn("cosh")
    _print_Abs, _print_sign = _fn("abs"), _fn("sign")
    _print_erf, _print_loggamma = _fn("erf"), _fn("lgamma")
    _print_sigmoid, _print_softplus, _print_relu, _print_clip = _fn("sigmoid"), _fn("softplus"), _fn("relu"), _fn("clip")
    _print_root, _print_xlogy = _fn("root"), _fn("xlogy")
    del _fn

    def _print_polygamma(self, expr):
        order, x = expr.args
        if order == 0:
            return self._call("digamma", x)
        if not self._is_tensor(x):
            raise NotImplementedError("polygamma of a constant is folded by SymPy")  # pragma: no cover
        return self.fill(self.CALLS["polygamma"], self._print(order), self._print(x))

    def _fold(self, key: str, args) -> str:
        args = sorted(args, key=lambda a: not self._is_tensor(a))
        if not any(self._is_tensor(a) for a in args):
            return f"{'max' if key == 'maximum' else 'min'}({', '.join(self._print(a) for a in args)})"
        text = self._print(args[0])
        for arg in args[1:]:
            text = self.call(key, (text, arg), None)  # the statement printer knows tensor-or-number rules
        return text

    def _print_Max(self, expr):
        return self._fold("maximum", expr.args)

    def _print_Min(self, expr):
        return self._fold("minimum", expr.args)

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
        return f"{self.parenthesize(base, pow_prec, strict=True)}**{self.parenthesize(exponent, pow_prec, strict=True)}"

    def _print_Mul(self, expr):
        """Denominators as successive divisions: y/p**2 prints y/p/p."""
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

    def _print_Integer(self, expr):
        return str(expr.p)

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_Pi(self, expr):
        return self.g("$math.pi")

    def _print_Exp1(self, expr):
        return self.g("$math.e")

    def _print_Relational(self, expr):
        return f"({self._print(expr.lhs)} {expr.rel_op} {self._print(expr.rhs)})"

    def _logical(self, name: str, args) -> str:
        if not any(self._is_tensor(a) for a in args):
            word = {"and": " and ", "or": " or "}[name]
            return "(" + word.join(self._print(a) for a in args) + ")"
        text = self._print(args[0])
        for arg in args[1:]:
            text = self.fill(self.LOGICAL[name], text, self._print(arg))
        return text

    def _print_And(self, expr):
        return self._logical("and", list(expr.args))

    def _print_Or(self, expr):
        return self._logical("or", list(expr.args))

    def _print_Not(self, expr):
        if not self._is_tensor(expr.args[0]):
            return f"(not {self._print(expr.args[0])})"
        return self.fill(self.LOGICAL["not"], self._print(expr.args[0]))

    def _print_BooleanTrue(self, expr):
        return "True"

    def _print_BooleanFalse(self, expr):
        return "False"

    def _print_Piecewise(self, expr):
        """Inline: a Piecewise of scalars (its conditions on parameters and constants)."""
        pieces = list(expr.args)
        tensor = any(self._is_tensor(v) or self._is_tensor(c) for v, c in pieces)
        text = self._print(pieces[-1].expr)
        tail_tensor = self._is_tensor(pieces[-1].expr)
        for value, cond in reversed(pieces[:-1]):
            if cond == S.true:
                text, tail_tensor = self._print(value), self._is_tensor(value)
                continue
            if not tensor:
                text = f"({self._print(value)} if {self._print(cond)} else {text})"
                continue
            printed = self._print(value)
            if not self._is_tensor(value):
                printed = self.fill(self.FILL_LIKE, self.reference, printed)
            if not tail_tensor:
                text = self.fill(self.FILL_LIKE, self.reference, text)
            text = self.fill(self.WHERE, self._print(cond), printed, text)
            tail_tensor = True
        return text

    def _module_format(self, fqn, register=True):
        if fqn.startswith(self.MODULE + "."):
            return self.ns.glob(self.ALIAS) + fqn[len(self.MODULE):]
        return super()._module_format(fqn, register)

    # -- statements ------------------------------------------------------------------------------
    def operand(self, arg, precedence: float = 0, strict: bool = False) -> str:
        if isinstance(arg, str):
            return arg
        text = self.doprint(arg)
        if not isinstance(arg, sympy.Symbol) and precedence:
            return self.parenthesize(arg, precedence, strict=strict)
        return text

    def is_array(self, arg) -> bool:
        return isinstance(arg, sympy.Basic) and self._kind(arg).what == ARRAY

    def is_tensor_operand(self, arg) -> bool:
        """An operand that is already a framework array (an array, or a 0-d tensor parameter); printed text
        passed along (an inline fold) was printed from tensors."""
        return isinstance(arg, str) or (isinstance(arg, sympy.Basic) and self._is_tensor(arg))

    def _kind(self, arg) -> Kind:
        if isinstance(arg, sympy.Symbol) and arg in self.kinds:
            return self.kinds[arg]
        kinds = [self.kinds.get(s) for s in arg.free_symbols]
        if any(k is not None and k.what == ARRAY for k in kinds):
            return Kind(ARRAY)
        return Kind(SCALAR if any(k is not None for k in kinds) else "const")

    def typed(self, arg) -> str:
        """An operand as a framework value of the reference dtype when it is a plain number."""
        text = self.operand(arg)
        if self.is_tensor_operand(arg):
            return text
        return self.fill(self.FILL_LIKE, self.reference, text)

    def statement(self, st: Statement, name_of: Callable[[sympy.Symbol], str]) -> str:
        return f"{name_of(st.target)} = {self.expression(st, name_of)}"

    def expression(self, st: Statement, name_of) -> str:
        out = name_of(st.out) if st.out is not None else None
        op, args = st.op, st.args
        if op == "copy":
            return self.operand(args[0])
        if op in ("add", "sub", "mul", "div"):
            return self.arithmetic(op, args[0], args[1], out)
        if op == "axpy":  # a + k*b with k a number, one operation (backends that have it)
            a, b, k = args
            template = self.AXPY_OUT if out is not None else self.AXPY
            return self.fill(template, self.operand(a), self.operand(b), self.operand(k), o=out)
        if op == "neg":
            if out is not None and "neg" in self.ARITH_OUT:
                return self.fill(self.ARITH_OUT["neg"], self.operand(args[0]), o=out)
            return "-" + self.operand(args[0], PRECEDENCE["Mul"])
        if op == "pow":
            return f"{self.operand(args[0], PRECEDENCE['Pow'], True)}**{self.operand(args[1], PRECEDENCE['Pow'], True)}"
        if op == "call":
            return self.call(args[0], args[1:], out)
        if op == "cmp":
            rel, a, b = args
            return f"{self.operand(a, PRECEDENCE['Relational'] + 1)} {rel} {self.operand(b, PRECEDENCE['Relational'] + 1)}"
        if op in ("and", "or"):
            return self.fill(self.LOGICAL[op], self.operand(args[0]), self.operand(args[1]))
        if op == "not":
            return self.fill(self.LOGICAL["not"], self.operand(args[0]))
        if op == "onehot":
            return self.fill("$_onehot({0}, {1})", self.operand(args[0]), self.reference)
        axis = repr(st.axis) if st.axis is not None and not st.axis.lstrip("-").isdigit() else st.axis
        if op in ("sum", "max", "logsumexp"):
            return self.fill(f"$_{op}({{0}}, {{1}})", self.operand(args[0]), axis)
        context = "".join(", " + name_of(c) for c in st.context)
        if op == "count":
            return self.fill("$_count({0}, {1}{2})", axis, self.reference, context)
        if op == "seed":
            return self.fill("$_seed({0}, sample_weight{1})", self.reference, context)
        if op == "collect":
            value = self.operand(args[0]) if args else "0"
            return self.fill("$_collect({0}, {1}{2})", value, name_of(st.like), context)
        raise ValueError(f"unknown statement {op}")  # pragma: no cover - schedule makes only these

    _INFIX = {"add": ("+", "Add"), "sub": ("-", "Add"), "mul": ("*", "Mul"), "div": ("/", "Mul")}

    def arithmetic(self, op: str, a, b, out: str | None) -> str:
        if out is not None and op in self.ARITH_OUT:
            if not self.is_tensor_operand(a) and op in ("add", "mul") and self.ARITH_NEEDS_TENSOR_FIRST:
                a, b = b, a
            if self.is_tensor_operand(a) or not self.ARITH_NEEDS_TENSOR_FIRST:
                return self.fill(self.ARITH_OUT[op], self.operand(a), self.operand(b), o=out)
        symbol, prec = self._INFIX[op]
        level = PRECEDENCE[prec]
        return f"{self.operand(a, level)} {symbol} {self.operand(b, level, strict=op in ('sub', 'div'))}" \
            if op in ("add", "sub") else \
            f"{self.operand(a, level)}{symbol}{self.operand(b, level, strict=op == 'div')}"

    ARITH_NEEDS_TENSOR_FIRST = False
    AXPY: str | None = None          # a + k*b in one operation, if the framework has it
    AXPY_OUT: str | None = None

    def call(self, name: str, args, out: str | None) -> str:
        if name == "where":
            cond, a, b = args
            if not (self.is_tensor_operand(a) or self.is_tensor_operand(b)) or self.WHERE_TYPED:
                a_text = self.typed(a) if (self.WHERE_TYPED or not self.is_tensor_operand(b)) else self.operand(a)
                b_text = self.typed(b) if self.WHERE_TYPED else self.operand(b)
                return self.fill(self.WHERE, self.operand(cond), a_text, b_text)
            return self.fill(self.WHERE, self.operand(cond), self.operand(a), self.operand(b))
        if name == "polygamma":
            order, x = args
            if order == 0:
                return self.call("digamma", (x,), out)
            return self.fill(self.CALLS["polygamma"], self.operand(order), self.operand(x))
        printed = [self.operand(a) for a in args]
        if out is not None and name in self.CALLS_OUT:
            return self.fill(self.CALLS_OUT[name], *printed, o=out)
        return self.fill(self.CALLS[name], *printed)

    WHERE_TYPED = False   # True where where() needs both branches as tensors of one dtype (TensorFlow)


@dataclass(frozen=True)
class Backend:
    """One target framework: its printer and the pieces of its module template (see `emit`)."""

    name: str
    printer: Callable[..., ArrayPrinterMixin]
    imports: tuple[tuple[str, str], ...]        # (module, alias) of the emitted module's imports
    helpers: Mapping[str, str]                  # private helper name -> source (canonical names)
    reductions: Mapping[str, Mapping[str, str]]  # reduction -> {helper name: source} (_seed, _reduce, ...)
    templates: Mapping[str, str] = field(default_factory=dict)  # pieces of the public functions
    extras: Callable[..., str] | None = None    # framework classes (autograd Function, Keras Loss)
    notes: tuple[str, ...] = field(default=())  # lines for the module header
    inplace: bool = True                        # statements may write into dead temporaries (out=)
    tensor_scalars: bool = False                # parameters become 0-d tensors of the inputs' dtype


# Helper source that the NumPy and PyTorch module templates share word for word.
AXES_HELPER = '''def _axes(ndim, axis):
    """The axes a reduction spans: all but the batch axis ('sample'), every axis ('all'), or one."""
    if axis == "sample":
        return tuple(range(1, ndim))
    if axis == "all":
        return tuple(range(ndim))
    return (ndim + axis,)
'''
