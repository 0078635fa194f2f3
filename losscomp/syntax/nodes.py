"""The syntax tree of the loss language: small immutable nodes, each with its source span.

The parser builds these; `losscomp.ir` gives them meaning (names, SymPy expressions).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Optional, Union

from ..errors import Span


@dataclass(frozen=True)
class Number:
    value: Fraction  # exact: 0.1 is 1/10, 1e-7 is 1/10000000
    text: str
    span: Span


@dataclass(frozen=True)
class Name:
    id: str
    span: Span


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "not"
    operand: "Expr"
    span: Span


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / ^ and or
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True)
class Compare:
    op: str  # < <= > >= == !=
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True)
class IfElse:
    condition: "Expr"
    then: "Expr"
    otherwise: "Expr"
    span: Span


@dataclass(frozen=True)
class Annotated:
    """`name: domain` -- only meaningful in a definition's header."""

    value: "Expr"
    domain: Name
    span: Span


@dataclass(frozen=True)
class Keyword:
    """`name = expr` inside parentheses: a parameter default, or a keyword argument."""

    name: Name
    value: "Expr"
    span: Span


Argument = Union["Expr", Annotated, Keyword]


@dataclass(frozen=True)
class Call:
    function: Name
    groups: tuple[tuple[Argument, ...], ...]  # argument groups separated by ';'
    span: Span


Expr = Union[Number, Name, Unary, Binary, Compare, IfElse, Call]


@dataclass(frozen=True)
class Binding:
    name: Name
    value: Expr
    span: Span


@dataclass(frozen=True)
class Definition:
    header: Call
    body: Expr
    bindings: tuple[Binding, ...]
    wrt: tuple[Name, ...]
    span: Span


@dataclass(frozen=True)
class Bare:
    """A lone expression; its free names become the arguments."""

    body: Expr
    bindings: tuple[Binding, ...]
    wrt: tuple[Name, ...]
    span: Span


@dataclass(frozen=True)
class Module:
    """What one source text holds: definitions, or one bare expression."""

    definitions: tuple[Definition, ...]
    bare: Optional[Bare]
    source: str
