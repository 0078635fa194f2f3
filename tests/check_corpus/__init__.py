"""Hand-written losses and gradients for testing `losscomp.check`: each module holds WRONG cases
(deliberately wrong, each with the diagnosis code it must get) and RIGHT cases (correct, written
differently from the catalog, which must get "agrees" or "agrees_except_kinks")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Case:
    fn: Callable
    against: str
    kind: str = "loss"
    expect: str = "agrees"             # a diagnosis code, or "agrees" / "agrees_except_kinks"
    params: dict = field(default_factory=dict)
    why: str = ""

    @property
    def id(self) -> str:
        return getattr(self.fn, "__name__", type(self.fn).__name__)
