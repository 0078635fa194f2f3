"""The loss language: parsing, precedence, scoping, and clear errors for bad input."""

from __future__ import annotations

import math

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import losscomp
from losscomp import LossError, LossSyntaxError
from losscomp.ir import lower_module
from losscomp.syntax import parse

y, p, x = sympy.symbols("y p x", real=True)


def body(source: str, **kwargs) -> sympy.Expr:
    return lower_module(parse(source), lambda name: None, **kwargs)[-1].body


def same(a: sympy.Expr, b: sympy.Expr) -> bool:
    return sympy.simplify(a - b) == 0


# -- precedence and associativity --------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("-x^2", -x**2),
    ("2^-1*x", x / 2),
    ("x**2", x**2),
    ("2^3^2 + x", 2**9 + x),            # right-associative
    ("x - 1 - 2", x - 3),                # left-associative
    ("x / 2 / 4", x / 8),
    ("-x + 3*x", 2 * x),
    ("(x + 1)*(x - 1)", x**2 - 1),
    ("1e-7 * x", sympy.Rational(1, 10**7) * x),
    (".5*x", x / 2),
    ("exp(1) * x", sympy.E * x),
    ("pi * x", sympy.pi * x),
])
def test_precedence(text, expected):
    assert same(body(text), expected)


def test_numbers_are_exact():
    assert body("0.1 * x") == x / 10


def test_definitions_where_wrt_domains_and_comments():
    source = """
    # a comment line
    f(y: binary, p: unit; eps = 1e-7) = -(y*log(p + eps) + (1 - y)*log(1 - p + eps))  # trailing
    g(y, p, q) = a + b
      where a = (y - p)^2,
            b = a * q
      wrt p, q
    """
    definitions = lower_module(parse(source), lambda n: None)
    f, g = definitions
    assert [a.domain for a in f.arguments] == ["binary", "unit"]
    assert f.parameters[0].default == sympy.Rational(1, 10**7)
    assert f.arguments[1].symbol.is_positive
    assert g.wrt == ("p", "q")
    q = sympy.Symbol("q", real=True)
    assert same(g.body, (y - p)**2 * (1 + q))


def test_if_then_else_nests_and_uses_boolean_operators():
    expr = body("if x > 0 and not x > 1 then x else if x <= 0 or x == 5 then -x else 1")
    assert isinstance(expr, sympy.Piecewise)
    f = sympy.lambdify(x, expr, modules="math")
    assert [f(v) for v in (0.5, -2.0, 3.0)] == [0.5, 2.0, 1.0]


def test_calls_to_earlier_definitions_and_catalog():
    loss = losscomp.compile("""
    sq(a, b) = (a - b)^2
    combo(y, p; w = 0.5) = sq(y, p) + w * huber(y, p, delta = 2)
    """)
    assert [a.name for a in loss.definition.arguments] == ["y", "p"]
    assert loss.definition.parameters[0].name == "w"
    value = loss.value.subs({sympy.Symbol("y", real=True): 0, sympy.Symbol("p", real=True): 3,
                             sympy.Symbol("w", real=True): 1})
    assert value == 9 + 2 * (3 - 1)   # huber with delta 2 at |e| = 3: 2 * (3 - 1)


def test_bare_expression_free_names_become_arguments():
    loss = losscomp.compile("max(tau*e, (tau-1)*e)", wrt="e", params={"tau": 0.9})
    assert [a.name for a in loss.definition.arguments] == ["e"]
    assert [p.name for p in loss.definition.parameters] == ["tau"]


# -- errors name the place --------------------------------------------------------------------------
@pytest.mark.parametrize("source, line, column, phrase", [
    ("f(y, p) = (y - p", 1, 11, "never closed"),
    ("f(y, p) = y - p)", 1, 16, "no matching"),
    ("f(y, p) = y +", 1, 14, "unexpected end of input"),
    ("f(y, p) = lgo(p)", 1, 11, "did you mean 'log'"),
    ("f(y, p) = y - pp", 1, 15, "did you mean 'p'"),
    ("f(y, p) = a\n  where a = a", 2, 9, "refers to itself"),
    ("f(y, p) = a where a = b, b = 1", 1, 23, "before its binding"),
    ("f(y: prob, p) = y", 1, 6, "unknown domain"),
    ("f(y, p) = log(p, y)", 1, 11, "takes 1 argument"),
    ("f(y, p) = (y < p) + 1", 1, 12, "not a number"),
    ("f(y, p) = if y then 1 else 0", 1, 14, "expected a condition"),
    ("f(y, p) = y\nf(y, p) = p", 2, 1, "defined twice"),
    ("f(y, p) = y wrt q", 1, 17, "not an argument"),
    ("f(y, p) = 1/0", 1, 13, "division by zero"),
    ("f(y, p) = y @ p", 1, 13, "unexpected character '@'"),
    ("f(y, p; k) = y", 1, 9, "needs a default"),
    ("f(y, p; k = p) = y", 1, 13, "constant"),
    ("f(y, p) = sum(y, axis=2)", 1, 23, "axis must be"),
    ("f(y, p) = sum(y, keep=1)", 1, 18, "only axis"),
    ("f(y, p) = sum(p, p)", 1, 11, "takes 1 argument"),
    ("f(y, p) = dot(y)", 1, 11, "takes 2 arguments"),
    ("f(y, p) = sum(onehot(p) * y)", 1, 22, "domain 'index'"),
    ("f(y: index, p) = y * p", 1, 1, "use it through onehot(y)"),
])
def test_errors_name_line_and_column(source, line, column, phrase):
    with pytest.raises(LossError) as info:
        losscomp.compile(source)
    message = str(info.value)
    assert message.startswith(f"line {line}, column {column}:"), message
    assert phrase in message
    assert "\n" in message and "^" in message.splitlines()[-1]


def test_empty_source():
    with pytest.raises(LossSyntaxError, match="empty"):
        parse("  # only a comment\n")


# -- properties --------------------------------------------------------------------------------------
_leaf = st.sampled_from(["x", "y", "2", "0.5", "3"])
_unary = ["exp", "tanh", "sin", "cos", "sigmoid", "softplus", "abs", "relu"]


def _tree(children):
    return st.one_of(
        st.tuples(st.sampled_from("+-*"), children, children).map(lambda t: ("bin",) + t),
        st.tuples(st.sampled_from(_unary), children).map(lambda t: ("fn",) + t),
        children.map(lambda c: ("neg", c)),
        st.tuples(children, children).map(lambda t: ("max",) + t),
    )


trees = st.recursive(_leaf, _tree, max_leaves=8)


def to_text(tree, loose: bool) -> str:
    """Print a tree: fully parenthesized, or with the fewest parentheses precedence allows."""
    if isinstance(tree, str):
        return tree
    kind = tree[0]
    if kind == "bin":
        _, op, a, b = tree
        if loose and op in "+-":
            left, right = to_text(a, loose), to_text(b, loose)
            right = right if not isinstance(b, tuple) or b[0] in ("fn", "max") else f"({right})"
            return f"{left} {op} {right}"
        left, right = to_text(a, loose), to_text(b, loose)
        if loose:  # a loose sum under a product needs its parentheses back
            left = f"({left})" if isinstance(a, tuple) and a[0] == "bin" and a[1] in "+-" else left
            right = f"({right})" if isinstance(b, tuple) and b[0] == "bin" and b[1] in "+-" else right
        return f"({left} {op} {right})"
    if kind == "fn":
        return f"{tree[1]}({to_text(tree[2], loose)})"
    if kind == "neg":
        inner = to_text(tree[1], loose)
        return f"(-({inner}))" if isinstance(tree[1], tuple) and tree[1][0] == "bin" else f"(-{inner})"
    return f"max({to_text(tree[1], loose)}, {to_text(tree[2], loose)})"


def to_sympy(tree):
    """The same tree built with SymPy constructors directly (an independent route)."""
    from losscomp.functions import relu, sigmoid, softplus
    if isinstance(tree, str):
        return {"x": x, "y": y}.get(tree) or sympy.nsimplify(tree)
    kind = tree[0]
    if kind == "bin":
        a, b = to_sympy(tree[2]), to_sympy(tree[3])
        return {"+": a + b, "-": a - b, "*": a * b}[tree[1]]
    if kind == "fn":
        fn = {"exp": sympy.exp, "tanh": sympy.tanh, "sin": sympy.sin, "cos": sympy.cos, "sigmoid": sigmoid,
              "softplus": softplus, "abs": sympy.Abs, "relu": relu}[tree[1]]
        return fn(to_sympy(tree[2]))
    if kind == "neg":
        return -to_sympy(tree[1])
    return sympy.Max(to_sympy(tree[1]), to_sympy(tree[2]))


def _value(expr, at):
    return complex(expr.evalf(30, subs=at))


@settings(max_examples=60, deadline=None)
@given(trees, st.booleans(), st.floats(-3, 3), st.floats(-3, 3))
def test_parse_matches_direct_construction(tree, loose, xv, yv):
    parsed = body(f"f(x, y) = {to_text(tree, loose)}")
    direct = to_sympy(tree)
    at = {x: xv, y: yv}
    a, b = _value(parsed, at), _value(direct, at)
    assert math.isclose(a.real, b.real, rel_tol=1e-12, abs_tol=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="xyp()+-*/^<>=!,;:#.e0123456789 \nabcwhereifthenlsmax", max_size=40))
def test_any_text_gives_a_result_or_a_loss_error(text):
    try:
        losscomp.compile(text)
    except LossError as error:
        assert str(error)
