"""The error tree. Every problem a user can cause is a `LossError`; none of Lark's or SymPy's leak out.

An error about source text carries a `Span` and renders as

    line 2, column 17: unknown function 'lgo'; did you mean 'log'?
        f(y, p) = -y * lgo(p)
                       ^^^
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Span:
    """A region of source text; lines and columns count from 1, `end_column` is exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def point(cls, line: int, column: int) -> "Span":
        return cls(line, column, line, column + 1)

    def excerpt(self, source: str) -> str:
        """The first line of the span with a caret line under it."""
        lines = source.splitlines() or [""]
        if not 1 <= self.line <= len(lines):
            return ""
        text = lines[self.line - 1].expandtabs(1)
        width = (self.end_column - self.column) if self.end_line == self.line else len(text) - self.column + 1
        width = max(1, min(width, len(text) - self.column + 1)) if self.column <= len(text) else 1
        return f"    {text}\n    {' ' * (self.column - 1)}{'^' * width}"


class LossError(Exception):
    """Base of every error losscomp reports; `str()` is the complete message for the user."""

    def __init__(self, message: str, span: Span | None = None, source: str | None = None,
                 hint: str | None = None):
        self.message = message
        self.span = span
        self.source = source
        self.hint = hint
        super().__init__(self._render())

    def with_source(self, source: str) -> "LossError":
        """Attach the source text (for the caret excerpt) if the error does not have it yet."""
        if self.source is None:
            self.source = source
            self.args = (self._render(),)
        return self

    def _render(self) -> str:
        parts = []
        if self.span is not None:
            parts.append(f"line {self.span.line}, column {self.span.column}: {self.message}")
            if self.source is not None:
                excerpt = self.span.excerpt(self.source)
                if excerpt:
                    parts.append(excerpt)
        else:
            parts.append(self.message)
        if self.hint:
            parts.append(self.hint)
        return "\n".join(parts)

    def __str__(self) -> str:  # keep in sync after with_source()
        return self.args[0]


class LossSyntaxError(LossError):
    """The text is not a sentence of the loss language (bad token, unbalanced parenthesis, ...)."""


class LossNameError(LossError):
    """A name or function that is not defined at the place it is used."""


class LossDefinitionError(LossError):
    """A definition that parses but does not make sense (self-referring binding, bad header, ...)."""


class LossDerivationError(LossError):
    """The derivative cannot be put in an emittable form."""


class LossLimitError(LossError):
    """A formula beyond one of the documented limits (`losscomp.limits`): too deep, too large, too slow."""


class LossOptionError(LossError):
    """A bad option to compile/emit/build (unknown backend, target or reduction)."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """'; did you mean 'x'?' for the nearest candidate, or '' when none is close."""
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
