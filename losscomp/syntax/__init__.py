"""The front end: loss-language text to a syntax tree."""

from .parser import grammar_path, parse

__all__ = ["grammar_path", "parse"]
