"""An audit of emitted module text: only the kinds of statement and the names the emitter writes.

The emitter's output is executed (`build()`, `check()`, `fit_linear()`, an imported `compile -o`
file), so the test run checks every module it loads: a loss source that managed to close a string
and start a statement of its own would show up here as a statement the emitter never writes.
"""

from __future__ import annotations

import ast
import builtins

# The frameworks an emitted module may import, under the aliases it uses.
ALLOWED_IMPORTS = {"math", "numpy", "torch", "tensorflow", "jax", "jax.numpy", "numba"}

# Builtins the emitted code may call; everything else (eval, exec, open, __import__, print, getattr...) is foreign.
ALLOWED_BUILTINS = {"abs", "max", "min", "len", "range", "tuple", "list", "int", "float", "bool", "isinstance",
                    "super", "zip", "enumerate", "sorted", "dict", "set", "any", "all", "sum", "repr", "str",
                    "ValueError", "TypeError", "RuntimeError", "KeyError", "NotImplementedError", "staticmethod",
                    "property", "classmethod", "type", "object", "slice", "divmod", "round", "reversed", "map",
                    "UserWarning", "hash", "format", "iter", "next", "hasattr", "frozenset", "callable"}
FORBIDDEN_NAMES = {"eval", "exec", "compile", "open", "__import__", "globals", "locals", "vars", "getattr",
                   "setattr", "delattr", "input", "print", "breakpoint", "exit", "quit", "__builtins__",
                   "memoryview", "help"}
ALLOWED_DUNDERS = {"__init__", "__name__", "__doc__", "__call__", "__module__", "__qualname__"}


class AuditError(AssertionError):
    pass


def audit(source: str) -> None:
    """Raise AuditError if `source` holds anything the emitter does not write."""
    tree = ast.parse(source)
    body = tree.body
    if not body or not (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                        and isinstance(body[0].value.value, str)):
        raise AuditError("an emitted module starts with its docstring")
    defined = set()
    for node in body[1:]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name not in ALLOWED_IMPORTS:
                    raise AuditError(f"import of {alias.name}")
                defined.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            raise AuditError(f"from-import at line {node.lineno}")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if not isinstance(target, ast.Name):
                    raise AuditError(f"module-level assignment to {ast.dump(target)}")
                defined.add(target.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Try):
            # optional accelerators: `try: import numba ... except ImportError: ...`
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    for alias in inner.names:
                        if alias.name not in ALLOWED_IMPORTS:
                            raise AuditError(f"import of {alias.name}")
                        defined.add((alias.asname or alias.name).split(".")[0])
                elif isinstance(inner, (ast.FunctionDef, ast.ClassDef)):
                    defined.add(inner.name)
                elif isinstance(inner, ast.Assign):
                    defined |= {t.id for t in inner.targets if isinstance(t, ast.Name)}
        elif _registers_derivative_rule(node, defined):
            pass
        else:
            raise AuditError(f"a {type(node).__name__} statement at module level, line {node.lineno}")
    for node in ast.walk(tree):
        if isinstance(node, (ast.Global, ast.Nonlocal, ast.Delete)):
            raise AuditError(f"{type(node).__name__} at line {node.lineno}")
        if isinstance(node, (ast.Import, ast.ImportFrom)) and node not in body and not _in_try(tree, node):
            raise AuditError(f"an import inside a function, line {node.lineno}")
        if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES and not _is_local(tree, node, node.id):
            raise AuditError(f"the name {node.id} at line {node.lineno}")
        if isinstance(node, ast.Attribute) and node.attr.startswith("__") and node.attr not in ALLOWED_DUNDERS:
            raise AuditError(f"the attribute {node.attr} at line {node.lineno}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            if name in vars(builtins) and name not in ALLOWED_BUILTINS and name not in defined \
                    and not _is_local(tree, node, name):
                raise AuditError(f"a call of the builtin {name} at line {node.lineno}")


def _registers_derivative_rule(node: ast.stmt, defined: set) -> bool:
    """JAX's `f.defvjp(fwd, bwd, ...)` / `f.defjvp(rule, ...)`: a call statement on a function defined
    above, whose arguments are functions defined above and constant keywords."""
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        return False
    call = node.value
    return (isinstance(call.func, ast.Attribute) and call.func.attr in ("defvjp", "defjvp")
            and isinstance(call.func.value, ast.Name) and call.func.value.id in defined
            and all(isinstance(a, ast.Name) and a.id in defined for a in call.args)
            and all(isinstance(k.value, ast.Constant) for k in call.keywords))


def _in_try(tree: ast.Module, target: ast.AST) -> bool:
    return any(isinstance(n, ast.Try) and any(inner is target for inner in ast.walk(n)) for n in tree.body)


def _is_local(tree: ast.Module, call: ast.AST, name: str) -> bool:
    """True when `name` is a parameter or an assigned name of a function enclosing `call` (which then
    shadows the builtin: nn.Module.forward takes `input`, as PyTorch's losses do)."""
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.Lambda)) and any(n is call for n in ast.walk(function)):
            args = function.args
            params = {a.arg for a in args.args + args.kwonlyargs + args.posonlyargs}
            params |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
            if name in params:
                return True
            for inner in ast.walk(function):
                if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store) and inner.id == name:
                    return True
    return False
