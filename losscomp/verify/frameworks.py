"""NumPy, PyTorch, TensorFlow and JAX seen from the checker: which one a function is written in, how
to hand it arrays and take results back, and how to differentiate what it returns.

A framework is imported only when the function being checked already uses it (or the caller names
it), so checking a NumPy function never loads torch or TensorFlow. JAX keeps float64 only in its x64
mode: every call into JAX code runs inside `Framework.precision()`, a context that turns it on.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
import types
import warnings
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .report import CheckInputError

FRAMEWORKS = ("numpy", "torch", "tensorflow", "jax")
ALIASES = {"np": "numpy", "pytorch": "torch", "tf": "tensorflow", "keras": "tensorflow"}
_ROOTS = {"numpy": "numpy", "torch": "torch", "tensorflow": "tensorflow", "keras": "tensorflow",
          "tf_keras": "tensorflow", "jax": "jax", "jaxlib": "jax", "optax": "jax", "flax": "jax"}


def framework_name(name: str) -> str:
    key = ALIASES.get(name, name)
    if key not in FRAMEWORKS:
        raise CheckInputError(f"unknown framework '{name}'; choose one of {', '.join(FRAMEWORKS)}")
    return key


def _import(name: str):
    if name == "tensorflow":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise CheckInputError(f"{name} is not installed ({error})") from None


@contextmanager
def quiet():
    """No NumPy floating-point warnings and no Python warnings from the function under test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            yield


# -- which framework ------------------------------------------------------------------------------

def _code_objects(code: types.CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _callable_parts(fn) -> list:
    """The plain functions behind a callable: partials, bound methods, modules' forward, __call__."""
    seen, out, todo = set(), [], [fn]
    while todo:
        f = todo.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        if isinstance(f, functools.partial):
            todo.append(f.func)
        elif inspect.ismethod(f):
            todo.append(f.__func__)
        elif inspect.isfunction(f):
            out.append(f)
        elif not inspect.isclass(f) and callable(f):
            for name in ("forward", "call", "__call__"):
                method = getattr(type(f), name, None)
                if inspect.isfunction(method):
                    todo.append(method)
    return out


def _root(obj) -> str | None:
    module = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
    if not isinstance(module, str):
        return None
    return _ROOTS.get(module.split(".")[0])


def referenced(fn, depth: int = 3) -> set[str]:
    """Frameworks whose modules or functions `fn` refers to (globals, closures, nested functions)."""
    found: set[str] = set()
    if depth < 0:
        return found
    for obj in (fn, type(fn)):
        root = _root(obj)
        if root and root != "numpy" and obj is type(fn):
            found.add(root)
    for f in _callable_parts(fn):
        namespace = f.__globals__
        names = {n for code in _code_objects(f.__code__) for n in code.co_names}
        values = [namespace[n] for n in names if n in namespace]
        values += [cell.cell_contents for cell in (f.__closure__ or ()) if _has_contents(cell)]
        for value in values:
            root = _root(value) if isinstance(value, types.ModuleType) or callable(value) else None
            if root:
                found.add(root)
            elif callable(value) and not isinstance(value, type) and getattr(value, "__module__", "") not in (
                    "builtins",):
                found |= referenced(value, depth - 1)
    return found


def _has_contents(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def detect(fn, probe: Callable[[str], Any] | None = None) -> str:
    """numpy, torch, tensorflow or jax: from what `fn` refers to, else by calling `probe(framework)`."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(fn, torch.nn.Module):
        return "torch"
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(fn, getattr(getattr(keras, "losses", None), "Loss", ())):
        return "tensorflow"
    found = referenced(fn)
    frameworks = found - {"numpy"}
    if len(frameworks) == 1:
        return frameworks.pop()
    if not frameworks and found == {"numpy"}:
        return "numpy"
    first_error = None
    if probe is not None:
        for name in FRAMEWORKS:
            if name != "numpy" and name not in sys.modules:
                continue
            try:
                result = probe(name)
            except Exception as error:  # noqa: BLE001 - the function rejects these inputs; try the next kind
                first_error = first_error or error
                continue
            kind = result_framework(result)
            return kind or name
    if first_error is not None:
        raise CheckInputError(f"{first_error} (with NumPy arrays; pass framework= if it takes tensors)")
    raise CheckInputError("cannot tell which framework the function is written in; pass framework=")


def result_framework(result) -> str | None:
    if isinstance(result, (tuple, list)) and result:
        return result_framework(result[0])
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(result, torch.Tensor):
        return "torch"
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(result, (tf.Tensor, tf.Variable)):
        return "tensorflow"
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(result, jax.Array):
        return "jax"
    return None


# -- arrays in and out ----------------------------------------------------------------------------

class Framework:
    """Conversion and autodiff for one framework."""

    def __init__(self, name: str):
        self.name = framework_name(name)
        self.lib = np if self.name == "numpy" else _import(self.name)

    def precision(self):
        """A context for calls into the framework: JAX's x64 mode (float64 stays float64), else nothing."""
        if self.name != "jax":
            return nullcontext()
        enable = getattr(self.lib, "enable_x64", None)
        if enable is None:  # jax < 0.6
            from jax.experimental import enable_x64 as enable
        return enable(True)

    def tensor(self, x: np.ndarray, watch: bool = False):
        x = np.asarray(x)
        if self.name == "torch":
            t = self.lib.from_numpy(np.array(x, copy=True))
            return t.requires_grad_(True) if watch else t
        if self.name == "tensorflow":
            return self.lib.constant(x)
        if self.name == "jax":
            return self.lib.numpy.asarray(x)
        return np.array(x, copy=True)

    def to_numpy(self, value) -> Any:
        """Results as float64 NumPy arrays (nested tuples stay tuples)."""
        if isinstance(value, (tuple, list)):
            return tuple(self.to_numpy(v) for v in value)
        if self.name == "torch" and isinstance(value, self.lib.Tensor):
            return value.detach().cpu().numpy()
        if self.name == "tensorflow" and hasattr(value, "numpy"):
            return np.asarray(value.numpy())
        if self.name == "jax" and isinstance(value, self.lib.Array):
            return np.asarray(value)
        if hasattr(value, "numpy") and callable(value.numpy):  # a tensor of another framework
            return np.asarray(value.numpy())
        try:
            return np.asarray(value)
        except Exception as error:  # noqa: BLE001
            raise CheckInputError(f"the function returned {type(value).__name__}, not an array") from error

    def gradients(self, call: Callable[[Mapping[str, Any]], Any], inputs: Mapping[str, np.ndarray],
                  targets: Sequence[str], compiled: bool = False) -> tuple[list[np.ndarray | None], Any]:
        """d(sum of call's result)/d each target, and the result; None where it does not depend on one.
        compiled: JAX only, under jax.jit (for code known to trace, such as emitted modules)."""
        if self.name == "torch":
            tensors = {k: self.tensor(v, watch=k in targets and np.issubdtype(np.asarray(v).dtype, np.floating))
                       for k, v in inputs.items()}
            out = call(tensors)
            if isinstance(out, (tuple, list)) or not isinstance(out, self.lib.Tensor):
                raise CheckInputError("autodiff needs one tensor as the function's result")
            if not out.requires_grad:
                return [None] * len(targets), out
            grads = self.lib.autograd.grad(out.sum(), [tensors[t] for t in targets], allow_unused=True)
            return [None if g is None else g.detach().numpy() for g in grads], out
        if self.name == "tensorflow":
            tf = self.lib
            tensors = {k: self.tensor(v) for k, v in inputs.items()}
            with tf.GradientTape() as tape:
                for t in targets:
                    tape.watch(tensors[t])
                out = call(tensors)
                if isinstance(out, (tuple, list)):
                    raise CheckInputError("autodiff needs one tensor as the function's result")
                total = tf.reduce_sum(out)
            grads = tape.gradient(total, [tensors[t] for t in targets])
            return [None if g is None else np.asarray(tf.convert_to_tensor(g).numpy()) for g in grads], out
        if self.name == "jax":
            jax = self.lib
            tensors = {k: self.tensor(v) for k, v in inputs.items()}

            def total(*leaves):
                out = call(dict(tensors, **dict(zip(targets, leaves))))
                if isinstance(out, (tuple, list)):
                    raise CheckInputError("autodiff needs one array as the function's result")
                return jax.numpy.sum(out), out

            everything = tuple(range(len(targets)))
            differentiate = jax.grad(total, argnums=everything, has_aux=True)
            grads, out = (jax.jit(differentiate) if compiled else differentiate)(*(tensors[t] for t in targets))
            return [np.asarray(g) for g in grads], out   # JAX gives zeros, never None, where out does not depend
        raise CheckInputError("NumPy has no autodiff")


# -- calling the user's function ------------------------------------------------------------------

# Names frameworks give their loss arguments: PyTorch (input, target), Keras (y_true, y_pred), optax
# (predictions, targets), TensorFlow (labels, logits).
PREDICTION_NAMES = ("input", "y_pred", "pred", "preds", "prediction", "predictions", "y_hat", "yhat",
                    "logits", "output", "outputs", "scores")
TRUTH_NAMES = ("target", "targets", "y_true", "true", "truth", "label", "labels")


def framework_object(fn) -> str | None:
    """'torch' for an nn.Module, 'keras' for a keras.losses.Loss, else None."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(fn, torch.nn.Module):
        return "torch"
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(fn, getattr(getattr(keras, "losses", None), "Loss", ())):
        return "keras"
    return None


class Binding:
    """How the formula's arguments reach `fn`, decided once:

    1. `mapping` (formula argument or parameter -> fn's parameter name), as the caller gave it;
    2. a parameter of fn with the formula argument's own name;
    3. the frameworks' names: the formula's prediction (its default target) goes to `input`,
       `y_pred`, `predictions`, `logits`, ...; its truth (the first argument that is not a target) to
       `target`, `y_true`, `labels`, ...;
    4. the rest by position, in the framework's conventional order for a framework loss object (an
       nn.Module takes (prediction, truth, ...), PyTorch's order; a Keras Loss (y_true, y_pred)),
       else in the formula's order.
    The formula's parameters go by name to fn's parameters of the same name (or as `mapping` says).
    """

    def __init__(self, fn, arguments: Sequence[str], parameters: Mapping[str, float],
                 mapping: Mapping[str, str] | None = None, prediction: str | None = None):
        self.fn = fn
        self.arguments = tuple(arguments)
        self.how: list[str] = []
        try:
            signature = inspect.signature(_signature_source(fn))
        except (TypeError, ValueError):
            signature = None
        kinds = signature.parameters if signature is not None else {}
        positional = [n for n, p in kinds.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        named = {n for n, p in kinds.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        var_positional = any(p.kind == p.VAR_POSITIONAL for p in kinds.values())
        var_keyword = any(p.kind == p.VAR_KEYWORD for p in kinds.values())
        mapping = _checked_mapping(fn, mapping, self.arguments, parameters, signature, set(positional) | named,
                                   var_keyword)
        chosen: dict[str, str] = {a: mapping[a] for a in self.arguments if a in mapping}
        used = set(chosen.values())
        if chosen:
            self.how.append("as arguments= says")
        for a in self.arguments:
            if a not in chosen and a in kinds and a not in used and a in set(positional) | named:
                chosen[a] = a
                used.add(a)
        prediction = prediction if prediction in self.arguments else None
        truth = next((a for a in self.arguments if a != prediction), None) if prediction else None
        for role, names in ((prediction, PREDICTION_NAMES), (truth, TRUTH_NAMES)):
            if role is None or role in chosen:
                continue
            name = next((n for n in names if n in kinds and n not in used and n in set(positional) | named), None)
            if name is not None:
                chosen[role] = name
                used.add(name)
                if "by the frameworks' names" not in self.how:
                    self.how.append("by the frameworks' names")
        owner = framework_object(fn)
        rest = [a for a in self.arguments if a not in chosen]
        if owner is not None and prediction is not None and truth is not None:
            first = [prediction, truth] if owner == "torch" else [truth, prediction]
            order = first + [a for a in self.arguments if a not in first]
            rest = [a for a in order if a not in chosen]
            if len(rest) > 1 and rest != [a for a in self.arguments if a in rest]:
                self.how.append("in PyTorch's order (input, target, ...)" if owner == "torch"
                                else "in Keras' order (y_true, y_pred)")
        free = [n for n in positional if n not in used]
        if signature is None:
            chosen, extra = {}, rest
        else:
            if len(rest) > len(free) and not var_positional:
                have = ", ".join(positional) or "no positional parameters"
                raise CheckInputError(
                    f"{describe(fn)} takes ({have}), but the formula has {len(self.arguments)} argument(s) "
                    f"({', '.join(self.arguments)}); pass arguments={{formula argument: parameter name}} "
                    "to say which is which")
            chosen.update(zip(rest, free))
            extra = rest[len(free):]  # into *args
        # positional-only parameters (and everything before *args) by position, the rest by keyword
        at = {n: a for a, n in chosen.items()}
        needed = [i for i, n in enumerate(positional) if n in at and kinds[n].kind == kinds[n].POSITIONAL_ONLY]
        prefix = len(positional) if extra else (max(needed) + 1 if needed else 0)
        gaps = [positional[i] for i in range(prefix) if positional[i] not in at]
        if gaps:
            raise CheckInputError(f"{describe(fn)} needs '{gaps[0]}' before the arguments it takes by position; "
                                  "pass arguments= for every formula argument")
        self.order = list(kinds)                     # fn's parameters, in its order (for text())
        self.names = chosen                          # formula argument -> fn's parameter name
        if self.how and all(chosen.get(a) == n for a, n in zip(self.arguments, positional)) and not mapping:
            self.how = []                            # the formula's order anyway: nothing to say
        self.leading = [at[positional[i]] for i in range(prefix)] + list(extra)
        self.missing_keywords(signature, parameters, mapping)
        self.keywords = {mapping.get(k, k): v for k, v in parameters.items()
                         if mapping.get(k, k) in named and mapping.get(k, k) not in used | set(chosen.values())
                         and k not in self.arguments}

    def missing_keywords(self, signature, parameters, mapping) -> None:
        """Every parameter of fn without a default gets a value."""
        if signature is None:
            return
        given = set(self.names.values()) | {mapping.get(k, k) for k in parameters}
        variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        missing = [p.name for p in signature.parameters.values()
                   if p.kind not in variadic and p.default is p.empty and p.name not in given]
        if missing:
            raise CheckInputError(f"{describe(self.fn)} requires {', '.join(missing)}, which the formula "
                                  f"({', '.join(self.arguments)}) does not provide; pass arguments= to say "
                                  "which formula argument goes where")

    def call(self, tensors: Mapping[str, Any], swap: tuple[str, str] | None = None):
        """fn applied to the tensors; `swap` exchanges two arguments (to test for swapped arguments)."""
        values = {a: tensors[a] for a in self.arguments}
        if swap is not None:
            values[swap[0]], values[swap[1]] = values[swap[1]], values[swap[0]]
        leading = [values[a] for a in self.leading]
        named = {self.names[a]: values[a] for a in self.arguments if a not in self.leading}
        return self.fn(*leading, **named, **self.keywords)

    def text(self) -> str:
        """How the call is made, e.g. `fn(input=<y_pred>, target=<y>)`."""
        parts = []
        for a in self.leading:
            n = self.names.get(a)
            parts.append(f"{n}=<{a}>" if n and n != a else (a if n else f"<{a}>"))
        rank = {n: i for i, n in enumerate(self.order)}
        for a in sorted((a for a in self.arguments if a not in self.leading), key=lambda a: rank.get(self.names[a], 0)):
            n = self.names[a]
            parts.append(a if n == a else f"{n}=<{a}>")
        parts += [f"{k}={v!r}" for k, v in self.keywords.items()]
        return f"{describe(self.fn)}({', '.join(parts)})"

    def note(self) -> str | None:
        """How the arguments were matched, when it was more than same names or the formula's order."""
        if not self.how:
            return None
        pairs = ", ".join(f"{a} -> {self.names.get(a, '#' + str(i))}" for i, a in enumerate(self.arguments))
        return f"arguments matched {', then '.join(self.how)}: {pairs}"


def _checked_mapping(fn, mapping, arguments, parameters, signature, accepted: set[str],
                     var_keyword: bool) -> dict[str, str]:
    """`arguments=` as given, each key a formula argument or parameter, each value a parameter of fn."""
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise CheckInputError(f"arguments= maps formula arguments to the function's parameter names, e.g. "
                              f"{{'y_pred': 'input', 'y': 'target'}}; got {type(mapping).__name__}")
    from ..errors import did_you_mean

    known = list(arguments) + list(parameters)
    out: dict[str, str] = {}
    for key, value in mapping.items():
        if key not in known:
            raise CheckInputError(f"arguments= names '{key}', which is not an argument or parameter of the "
                                  f"formula{did_you_mean(str(key), known)} (its arguments: {', '.join(arguments)})")
        if not isinstance(value, str) or not value.isidentifier():
            raise CheckInputError(f"arguments= maps '{key}' to {value!r}; give the function's parameter name")
        if signature is not None and value not in accepted and not var_keyword:
            raise CheckInputError(f"arguments= maps '{key}' to '{value}', but {describe(fn)} has no parameter "
                                  f"'{value}'{did_you_mean(value, sorted(accepted))} (it takes "
                                  f"{', '.join(signature.parameters) or 'none'})")
        out[key] = value
    values = list(out.values())
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise CheckInputError(f"arguments= sends two formula arguments to '{twice[0]}'")
    return out


def _signature_source(fn):
    """What to read the parameters from: a torch Module's forward, a Keras Loss's call signature."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(fn, torch.nn.Module):
        return fn.forward
    return fn


def describe(fn) -> str:
    """A short name for a callable: `module.function`, `HuberLoss()`, `partial(quantile_loss)`."""
    if isinstance(fn, functools.partial):
        return f"partial({describe(fn.func)})"
    name = getattr(fn, "__name__", None)
    if name is None:
        return f"{type(fn).__name__}()"
    return name
