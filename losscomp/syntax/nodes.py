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
class Chain:
    """`a + b - c + ...`, `a * b / c ...`, `a and b and ...`: one left-associative run of operators of
    one family, kept flat so that a sum of 500 terms is not 500 levels deep."""

    first: "Expr"
    rest: tuple[tuple[str, "Expr"], ...]  # (operator, operand) in order
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
    """`name: domain`, `name: domain[role]` or `name: domain = default` -- only meaningful in a header."""

    value: "Expr"
    domain: Name
    span: Span
    role: Optional[Name] = None        # `sample` or `class`
    default: Optional["Expr"] = None   # a parameter with a domain


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


Expr = Union[Number, Name, Unary, Binary, Chain, Compare, IfElse, Call]


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


def children(node) -> list:
    """The sub-expressions of a node (of a definition: its body and its bindings' values)."""
    if isinstance(node, Chain):
        return [node.first, *(operand for _, operand in node.rest)]
    if isinstance(node, Call):
        return [getattr(a, "value", a) for group in node.groups for a in group]
    if isinstance(node, (Definition, Bare)):
        return [node.body, *(b.value for b in node.bindings)]
    if isinstance(node, Unary):
        return [node.operand]
    if isinstance(node, (Binary, Compare)):
        return [node.left, node.right]
    if isinstance(node, IfElse):
        return [node.condition, node.then, node.otherwise]
    return []


def mentions(node, name: str) -> bool:
    """True when the name occurs anywhere under `node` (without recursion)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, Name) and item.id == name:
            return True
        stack.extend(children(item))
    return False
