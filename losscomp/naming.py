"""Names in one emitted module: the user's, kept as written, and the emitter's, kept away from them.

A loss may name its arguments, parameters and bindings anything the language allows (`torch`, `v`,
`upstream`, `_collect`, `grad`...). Emitted code uses names of its own too: module aliases, helpers,
public functions called from other functions, locals of templates, temporaries. Every name the
emitter introduces comes from a `Namespace`, which hands out the wanted stem when it is free and
`stem_1`, `stem_2`, ... when a user name (or an earlier emitter name) holds it. User names are never
renamed, so the signatures keep the names the user wrote.

Symbols the compiler creates for itself (reductions, adjoints, temporaries) carry a leading
`INTERNAL` mark, which no identifier of the language can start with; the emitter gives each a
printable name from the namespace just before printing.
"""

from __future__ import annotations

import io
import keyword
import re
import tokenize
from typing import Iterable

INTERNAL = "@"


def internal(stem: str) -> str:
    """The name of a compiler-made symbol: never equal to a user name."""
    return INTERNAL + stem


def is_internal(name: str) -> bool:
    return name.startswith(INTERNAL)


def stem(name: str) -> str:
    return name[len(INTERNAL):] if is_internal(name) else name


class Namespace:
    """The names of one module. `user` names are fixed; `glob` and `local` hand out the emitter's."""

    def __init__(self, user_names: Iterable[str]):
        self.user = frozenset(user_names)
        for name in self.user:
            if not name.isidentifier() or keyword.iskeyword(name):
                raise ValueError(f"not a usable name: {name!r}")  # the parser refuses these earlier
        self._globals: dict[str, str] = {}
        self._taken = set(self.user)

    def _fresh(self, wanted: str, taken: set[str]) -> str:
        name, index = wanted, 0
        while name in taken or keyword.iskeyword(name):
            index += 1
            name = f"{wanted}_{index}"
        return name

    def glob(self, wanted: str) -> str:
        """The module-level name for the emitter's global `wanted` (a module alias, a helper, a constant),
        the same each time it is asked for."""
        if wanted not in self._globals:
            name = self._fresh(wanted, self._taken)
            self._globals[wanted] = name
            self._taken.add(name)
        return self._globals[wanted]

    def reserve(self, wanted: str) -> None:
        """Decide the name of a global before any local is handed out (so no local can take it)."""
        self.glob(wanted)

    def renames(self) -> dict[str, str]:
        """The globals that could not keep their wanted name: wanted -> given."""
        return {wanted: given for wanted, given in self._globals.items() if wanted != given}

    def scope(self) -> "Scope":
        """A fresh set of local names for one function body."""
        return Scope(self)


class Scope:
    """The locals of one function: never a user name, never a global of the module (ask for the
    globals a function uses before its locals)."""

    def __init__(self, namespace: Namespace):
        self.namespace = namespace
        self._locals: dict[str, str] = {}
        self._own: set[str] = set()

    def local(self, wanted: str) -> str:
        """A local name for `wanted`, the same each time within this scope."""
        if wanted not in self._locals:
            name = self.namespace._fresh(wanted, self.namespace._taken | self._own)
            self._locals[wanted] = name
            self._own.add(name)
        return self._locals[wanted]

    def __getitem__(self, wanted: str) -> str:
        return self.local(wanted)


_TOKEN = re.compile(r"(?<![\w.])([A-Za-z_]\w*)")


def rename_globals(text: str, renames: dict[str, str]) -> str:
    """Apply `renames` to the emitter's own template text (helpers), where no user name appears: every
    identifier that is not an attribute (`x.name`) and not inside a string literal is renamed."""
    if not renames:
        return text
    out, position = [], 0
    for start, end in _code_spans(text):
        out.append(text[position:start])
        out.append(_TOKEN.sub(lambda m: renames.get(m.group(1), m.group(1)), text[start:end]))
        position = end
    out.append(text[position:])
    return "".join(out)


def _code_spans(text: str) -> list[tuple[int, int]]:
    """The parts of Python source outside string literals and comments, as (start, end) pairs."""
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    skip = []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type in (tokenize.STRING, tokenize.COMMENT) or token.type == getattr(tokenize, "FSTRING_START", -1):
            (r0, c0), (r1, c1) = token.start, token.end
            skip.append((offsets[r0 - 1] + c0, offsets[r1 - 1] + c1))
    spans, position = [], 0
    for start, end in skip:
        spans.append((position, start))
        position = end
    spans.append((position, len(text)))
    return spans
