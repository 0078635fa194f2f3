"""Built-in losses, written in the loss language itself (`*.loss` beside this file).

Each definition is preceded by a comment: a one-line description ending in `Ref: ...`. A catalog
loss may call any catalog loss defined before it; user sources may call them all by name.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Optional

from ..ir import Definition, lower_module
from ..syntax import parse


@dataclass(frozen=True)
class Entry:
    definition: Definition
    description: str
    reference: str
    file: str


def _comment_above(source: str, line: int) -> str:
    """The comment block directly above `line` (1-based), joined into one paragraph."""
    lines = source.splitlines()
    block: list[str] = []
    index = line - 2
    while index >= 0 and lines[index].lstrip().startswith("#"):
        block.insert(0, lines[index].lstrip()[1:].strip())
        index -= 1
    return " ".join(block)


@functools.lru_cache(maxsize=1)
def _entries() -> dict[str, Entry]:
    entries: dict[str, Entry] = {}

    def resolve(name: str) -> Optional[Definition]:
        entry = entries.get(name)
        return entry.definition if entry else None

    resolve.names = lambda: list(entries)
    files = sorted((f for f in resources.files(__package__).iterdir() if f.name.endswith(".loss")),
                   key=lambda f: f.name)
    for file in files:
        source = file.read_text(encoding="utf-8")
        for definition in lower_module(parse(source), resolve):
            comment = _comment_above(source, definition.span.line)
            description, _, reference = comment.partition("Ref:")
            entries[definition.name] = Entry(definition, description.strip(), reference.strip(), file.name)
    return entries


def lookup(name: str) -> Optional[Definition]:
    """The catalog definition called `name`, or None."""
    entry = _entries().get(name)
    return entry.definition if entry else None


def names() -> list[str]:
    return list(_entries())


def entries() -> list[Entry]:
    return list(_entries().values())


lookup.names = names
