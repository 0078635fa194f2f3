"""Plain-text and LaTeX forms of expressions, for `derive`, headers and the demo.

Plain text reads like the loss language: `^` for powers, `if c then a else b` for Piecewise.
"""

from __future__ import annotations

from typing import Iterable

import sympy
from sympy.printing.str import StrPrinter


class _PlainPrinter(StrPrinter):
    def _print_Pow(self, expr, rational=False):
        text = super()._print_Pow(expr, rational)
        return text.replace("**", "^")

    def _print_Piecewise(self, expr):
        pieces = list(expr.args)
        text = self._print(pieces[-1].expr)
        for value, cond in reversed(pieces[:-1]):
            text = f"(if {self._print(cond)} then {self._print(value)} else {text})"
        return text

    def _print_Abs(self, expr):
        return f"abs({self._print(expr.args[0])})"

    def _print_And(self, expr):
        return " and ".join(self.parenthesize(a, 2) for a in expr.args)

    def _print_Or(self, expr):
        return " or ".join(self.parenthesize(a, 2) for a in expr.args)

    def _print_Not(self, expr):
        return f"not {self.parenthesize(expr.args[0], 3)}"

    def _print_Max(self, expr):
        return f"max({', '.join(self._print(a) for a in expr.args)})"

    def _print_Min(self, expr):
        return f"min({', '.join(self._print(a) for a in expr.args)})"

    def _print_loggamma(self, expr):
        return f"lgamma({self._print(expr.args[0])})"

    def _print_polygamma(self, expr):
        if expr.args[0] == 0:
            return f"digamma({self._print(expr.args[1])})"
        return super()._print_Function(expr)

    def _print_Exp1(self, expr):
        return "exp(1)"


def plain(expr: sympy.Basic) -> str:
    """The expression as one line of loss-language-like text."""
    return _PlainPrinter().doprint(expr)


def with_names(expr: sympy.Basic, bindings: Iterable[tuple[str, sympy.Expr]],
               symbol=lambda name: sympy.Symbol(name, real=True)) -> sympy.Basic:
    """Write the `where` names back into an expression: y - y_pred -> e, and 2 + y - y_pred -> e + 2.

    One pass from the top: a subexpression equal to a binding's value (the latest binding first) becomes
    its name, and so does a part of a sum equal to a binding that is a sum. Linear in the size of the
    expression (shared subexpressions are rewritten once), however many bindings there are."""
    exact: dict = {}
    sums: list = []
    for name, value in reversed(list(bindings)):
        if value.is_Atom:
            continue  # a number or a lone symbol: substituting it would rename unrelated parts
        named = symbol(name)
        exact.setdefault(value, named)
        if isinstance(value, sympy.Add):
            sums.append((set(value.args), named))
    if not exact:
        return expr
    memo: dict = {}

    def rewrite(node):
        if node in memo:
            return memo[node]
        if node in exact:
            result = exact[node]
        elif not node.args or isinstance(node, sympy.Symbol):
            result = node
        elif isinstance(node, sympy.Add):
            rest = list(node.args)
            found = []
            for terms, named in sums:
                if len(terms) < len(rest) and terms.issubset(rest):
                    rest = [t for t in rest if t not in terms]
                    found.append(named)
            result = sympy.Add(*found, *(rewrite(t) for t in rest))
        else:
            args = [rewrite(a) for a in node.args]
            result = node.func(*args) if any(a is not b for a, b in zip(args, node.args)) else node
        memo[node] = result
        return result

    return rewrite(expr)


def latex(expr: sympy.Basic) -> str:
    return sympy.latex(expr)


def structured(hessian) -> str:
    """A StructuredHessian as 'diag(D) + u a^T - ...' (within one sample)."""
    parts = [f"diag({plain(hessian.diagonal)})"] if hessian.diagonal != 0 else []
    for u, a in hessian.outer:
        text = f"({plain(u)}) ({plain(a)})^T"
        if u.could_extract_minus_sign():
            text = f"({plain(-u)}) ({plain(a)})^T"
            parts.append(("- " if parts else "-") + text)
        else:
            parts.append(("+ " if parts else "") + text)
    return " ".join(parts) if parts else "0"
