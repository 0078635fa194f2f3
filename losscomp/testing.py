"""Helpers for pytest users: assert that a hand-written function is the one a formula defines.

    from losscomp.testing import assert_matches

    def test_my_huber():
        assert_matches(my_huber, against="huber", kind="loss")

The assertion passes when `losscomp.check` says "agrees" or "agrees_except_kinks" (pass
`allow_kinks=False` to insist on the same subgradients); otherwise its message is the report.
"""

from __future__ import annotations

from typing import Any, Callable

from .verify import check
from .verify.report import Report

__all__ = ["assert_matches"]


def assert_matches(fn: Callable, against: Any, kind: str = "loss", *, allow_kinks: bool = True,
                   **options: Any) -> Report:
    """Check `fn` against `against` (see `losscomp.check` for the options); return the report."""
    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    report = check(fn, against=against, kind=kind, **options)
    accepted = ("agrees", "agrees_except_kinks") if allow_kinks else ("agrees",)
    if report.verdict not in accepted:
        raise AssertionError("\n" + str(report))
    return report
