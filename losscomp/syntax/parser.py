"""Source text -> syntax tree (`nodes.Module`), with Lark's LALR(1) parser and a Transformer.

Lark's exceptions stop here: a failure to parse becomes a `LossSyntaxError` naming the line and
column, and the Transformer's own errors are unwrapped from Lark's `VisitError`.
"""

from __future__ import annotations

import functools
import keyword
from decimal import Decimal
from fractions import Fraction
from importlib import resources
from pathlib import Path

import lark
from lark import Token, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.visitors import Transformer_NonRecursive

from .. import limits
from ..errors import LossError, LossLimitError, LossSyntaxError, Span
from . import nodes

GRAMMAR_NAME = "loss.lark"


def grammar_path() -> Path:
    """The grammar file: inside the installed package (wheel), else `grammar/` of the source tree."""
    packaged = resources.files("losscomp") / "grammar" / GRAMMAR_NAME
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "grammar" / GRAMMAR_NAME


@functools.lru_cache(maxsize=1)
def _lark() -> lark.Lark:
    return lark.Lark(grammar_path().read_text(encoding="utf-8"), parser="lalr", strict=True,
                     propagate_positions=True, maybe_placeholders=True)


def _span(meta) -> Span:
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _token_span(token: Token) -> Span:
    return Span(token.line, token.column, token.end_line, token.end_column)


def _name(token: Token) -> nodes.Name:
    """A NAME token as a node; Python's keywords (`import`, `lambda`, `None`, ...) cannot name anything,
    since every name of a loss may become a name in the emitted Python."""
    if keyword.iskeyword(str(token)):
        raise LossSyntaxError(f"'{token}' is a Python keyword; it cannot name an argument, parameter, "
                              f"binding or loss (emitted code is Python): choose another name",
                              _token_span(token))
    return nodes.Name(str(token), _token_span(token))


def _number(token: Token) -> nodes.Number:
    """A literal, exactly (0.1 is 1/10), if a float64 can hold it: never a 10^(10^8)-digit integer."""
    text, span = str(token), _token_span(token)
    if len(text) > limits.MAX_LITERAL_CHARS:
        raise LossSyntaxError(f"a number literal of {len(text)} characters; at most {limits.MAX_LITERAL_CHARS} "
                              f"(losscomp.limits.MAX_LITERAL_CHARS)", span)
    decimal = Decimal(text)  # keeps the exponent apart: 1e99999999 costs nothing here
    if decimal and not (-330 < decimal.adjusted() < 310 and 0 < abs(float(decimal)) < float("inf")):
        raise LossSyntaxError(f"the number {text} is outside the range of float64 (about 5e-324 to 1.8e308)", span)
    return nodes.Number(Fraction(decimal), text, span)


def _chain(kind: str, ops: tuple[str, ...]):
    """A builder for one family of left-associative operators: extends the chain on its left."""
    def build(self, meta, left, right):
        if isinstance(left, nodes.Chain) and left.rest[0][0] in ops:  # left-associative: (a - b) - c
            return nodes.Chain(left.first, left.rest + ((kind, right),), _span(meta))
        return nodes.Chain(left, ((kind, right),), _span(meta))
    return build


@v_args(inline=True, meta=True)
class _ToNodes(Transformer_NonRecursive):
    """One short method per alias of the grammar (non-recursive: nesting depth is checked afterwards)."""

    def number(self, meta, token):
        return _number(token)

    def name(self, meta, token):
        return _name(token)

    add, sub = _chain("+", ("+", "-")), _chain("-", ("+", "-"))
    mul, div = _chain("*", ("*", "/")), _chain("/", ("*", "/"))
    and_, or_ = _chain("and", ("and",)), _chain("or", ("or",))

    def pow(self, meta, base, exponent):
        return nodes.Binary("^", base, exponent, _span(meta))

    def neg(self, meta, operand):
        # --x is x: a run of signs folds here, so ten thousand of them nest nothing
        if isinstance(operand, nodes.Unary) and operand.op == "-":
            return operand.operand
        return nodes.Unary("-", operand, _span(meta))

    def pos(self, meta, operand):
        return operand

    def not_(self, meta, operand):
        if isinstance(operand, nodes.Unary) and operand.op == "not":
            return operand.operand
        return nodes.Unary("not", operand, _span(meta))

    def compare(self, meta, left, op, right):
        return nodes.Compare(str(op), left, right, _span(meta))

    def if_else(self, meta, condition, then, otherwise):
        return nodes.IfElse(condition, then, otherwise, _span(meta))

    def annotated(self, meta, value, domain, role, default):
        return nodes.Annotated(value, _name(domain), _span(meta), role, default)

    def role(self, meta, name):  # a word of the language (`sample`, `class`), never a Python name
        return nodes.Name(str(name), _token_span(name))

    def keyword(self, meta, name, value):
        return nodes.Keyword(_name(name), value, _span(meta))

    def group(self, meta, *arguments):
        return tuple(arguments)

    def call(self, meta, name, *groups):
        groups = tuple(g for g in groups if g is not None)
        return nodes.Call(_name(name), groups, _span(meta))

    def binding(self, meta, name, value):
        return nodes.Binding(_name(name), value, _span(meta))

    def where_clause(self, meta, *bindings):
        return tuple(bindings)

    def wrt_clause(self, meta, *names):
        return tuple(_name(n) for n in names)

    def definition(self, meta, header, body, bindings, wrt):
        return nodes.Definition(header, body, bindings or (), wrt or (), _span(meta))

    def definitions(self, meta, *definitions):
        return tuple(definitions), None

    def bare(self, meta, body, bindings, wrt):
        return (), nodes.Bare(body, bindings or (), wrt or (), _span(meta))


_READABLE = {"NAME": "a name", "NUMBER": "a number", "COMPARE": "a comparison", "$END": "end of input"}


def _describe_expected(expected: set[str]) -> str:
    parser = _lark()
    words = []
    for name in sorted(expected):
        if name in _READABLE:
            words.append(_READABLE[name])
            continue
        try:
            pattern = parser.get_terminal(name).pattern
        except KeyError:
            continue
        if pattern.type == "str":
            words.append(f"'{pattern.value}'")
    words = sorted(set(words))
    if not words:
        return ""
    if len(words) > 6:
        words = words[:6] + ["..."]
    return "; expected " + ", ".join(words)


def _check_parentheses(source: str) -> None:
    """Name the unbalanced parenthesis itself, not the token where LALR gives up."""
    stack: list[tuple[int, int]] = []
    for line_no, line in enumerate(source.splitlines(), start=1):
        for col, char in enumerate(line.split("#", 1)[0], start=1):
            if char == "(":
                stack.append((line_no, col))
            elif char == ")":
                if not stack:
                    raise LossSyntaxError("unbalanced parenthesis: this ')' has no matching '('",
                                          Span.point(line_no, col), source)
                stack.pop()
    if stack:
        line_no, col = stack[-1]
        raise LossSyntaxError("unbalanced parenthesis: this '(' is never closed",
                              Span.point(line_no, col), source)


def _syntax_error(error: UnexpectedInput, source: str) -> LossSyntaxError:
    if isinstance(error, UnexpectedCharacters):
        char = source[error.pos_in_stream] if error.pos_in_stream < len(source) else "?"
        message = f"unexpected character {char!r}"
        if char in "'\"":
            message += " (the loss language has no strings)"
        return LossSyntaxError(message, Span.point(error.line, error.column), source)
    if isinstance(error, UnexpectedEOF) or (isinstance(error, UnexpectedToken) and error.token.type == "$END"):
        lines = source.rstrip().splitlines() or [""]
        span = Span.point(len(lines), len(lines[-1]) + 1)
        return LossSyntaxError("unexpected end of input" + _describe_expected(error.expected), span, source)
    if isinstance(error, UnexpectedToken):
        token = error.token
        message = f"unexpected {token.value!r}" + _describe_expected(error.expected)
        return LossSyntaxError(message, _token_span(token), source)
    return LossSyntaxError(str(error), None, source)  # pragma: no cover - Lark has no other kinds


def parse(source: str) -> nodes.Module:
    """Parse loss-language text; raises `LossSyntaxError` with line, column and a caret."""
    if not isinstance(source, str):
        raise LossSyntaxError(f"loss source must be text, not {type(source).__name__}")
    if not source.strip() or not any(line.split("#", 1)[0].strip() for line in source.splitlines()):
        raise LossSyntaxError("the loss source is empty")
    _check_parentheses(source)
    try:
        tree = _lark().parse(source)
    except UnexpectedInput as error:
        raise _syntax_error(error, source) from None
    try:
        definitions, bare = _ToNodes().transform(tree)
    except VisitError as error:  # unwrap: the user sees our error, not Lark's wrapper
        if isinstance(error.orig_exc, LossError):
            raise error.orig_exc.with_source(source) from None
        raise
    for node in [*definitions, *([bare] if bare else [])]:
        _check_depth(node, source)
    return nodes.Module(definitions, bare, source)


def _check_depth(root, source: str) -> None:
    """Nesting beyond `limits.MAX_DEPTH` is an error at the place it happens (checked without recursion)."""
    stack = [(root, 0)]
    while stack:
        node, level = stack.pop()
        if level > limits.MAX_DEPTH:
            raise LossLimitError(f"the formula nests more than {limits.MAX_DEPTH} levels deep here; simplify it "
                                 f"(with 'where' bindings) or raise losscomp.limits.MAX_DEPTH",
                                 getattr(node, "span", None), source)
        stack.extend((child, level + 1) for child in nodes.children(node))
