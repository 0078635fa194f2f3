"""TensorFlow framework objects of an emitted module: `loss_with_gradient` (tf.custom_gradient with the
symbolic gradient) and a keras.losses.Loss `<Name>Loss` that behaves as Keras' own losses do.

The Keras loss:
  call(y_true, y_pred)   y_true holds the arguments that are not targets (the truth), y_pred the
                         targets. One each: Keras' rank matching first (a trailing axis of 1 is
                         squeezed or added, as keras.losses.MeanSquaredError does, so a (N,) target
                         meets a Dense(1) output); integer class labels (domain index) lose a
                         trailing axis of 1. Several: packed along the last axis in the definition's
                         order and split into equal parts (gaussian_nll: y_pred = concat([mu, var]);
                         triplet: y_pred = concat([anchor, positive, negative]), y_true unused).
                         Y_TRUE and Y_PRED name them.
  per sample             an elementwise loss is averaged over the last axis (as Keras' losses do);
                         a per-sample loss gives its value per sample. Keras then applies
                         sample_weight, masks and its reduction, and casts y_true and y_pred to the
                         loss's dtype (its dtype policy: float32 unless dtype= says otherwise).
  saving                 get_config holds the parameters, the dtype, the formula's hash and the
                         command that regenerates the module. The class is registered as
                         `losscomp>{Name}Loss_{hash}`, which names the formula, and as
                         `losscomp>{Name}Loss`, the name saved files carry: from_config finds the
                         class of the saved hash among the loaded modules, and raises a clear error
                         naming the command when it is not loaded, so two formulas of one name never
                         load as each other.

Every name these templates introduce comes from the module's `Namespace`.
"""

from __future__ import annotations

import hashlib
import shlex
import textwrap

from ..errors import LossDefinitionError

# attributes and constructor arguments of keras.losses.Loss: a loss parameter cannot take one of these
RESERVED_ATTRIBUTES = frozenset({
    "name", "reduction", "dtype", "call", "get_config", "from_config", "Y_TRUE", "Y_PRED", "FORMULA",
    "REGISTERED", "REGENERATE"})
PACKAGE = "losscomp"


def formula_hash(spec) -> str:
    """A short hash of what the loss values are: the expression of the values and of the reductions they
    use (with every helper definition inlined, so two sources that differ only in a helper they call do
    not share it), the arguments with their roles, the parameters with their defaults, and the targets.
    Not the source's spelling (comments, spacing) and not the losscomp version."""
    import sympy

    steps = [(step.symbol.name, step.op, sympy.srepr(step.expr), step.axis) for step in spec.forward.steps]
    text = "\n".join([sympy.srepr(spec.value), repr(steps), repr(tuple(spec.roles)),
                      repr(tuple(spec.parameters)), repr(tuple(spec.targets))])
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def regenerate_command(spec) -> str:
    """The losscomp command that writes this module again."""
    parts = ["losscomp", "compile", spec.source, "--name", spec.name]
    default = (spec.arguments[1],) if len(spec.arguments) > 1 else (spec.arguments[0],)
    if tuple(spec.targets) != default:
        parts += ["--wrt", *spec.targets]
    for name, value in spec.parameters:
        parts += ["--param", f"{name}={float(value)!r}"]
    parts += ["--backend", "tensorflow", "-o", f"{spec.name}_tensorflow.py"]
    return " ".join(shlex.quote(p) for p in parts)


def sides(spec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(y_true, y_pred): the arguments that are not targets, and the targets, in the definition's order."""
    return tuple(a for a in spec.arguments if a not in spec.targets), tuple(spec.targets)


def framework_objects(spec, ns) -> str:
    tf, loss, grad = ns.glob("tf"), ns.glob("loss"), ns.glob("grad")
    parts = [_custom_gradient(spec, ns, tf, loss, grad)]
    for name, _ in spec.parameters:
        if name in RESERVED_ATTRIBUTES or name.startswith("_"):
            raise LossDefinitionError(
                f"the parameter '{name}' would replace the keras.losses.Loss attribute or argument of that name "
                "(the Keras loss keeps parameters as attributes); choose another name")
    parts.append(_keras_helpers(ns))
    parts.append(_keras_class(spec, ns))
    return "\n\n\n".join(parts)


def _custom_gradient(spec, ns, tf, loss, grad) -> str:
    scope = ns.scope()
    upstream, grads, inner, backward, g = (scope.local(n) for n in ("upstream", "grads", "_loss", "backward", "g"))
    args = ", ".join(spec.arguments)
    targets = ", ".join(spec.targets)
    kw = "".join(f", {n}={n}" for n, _ in spec.parameters)
    # the vector-Jacobian product: for reduction='none' grad() with upstream as the weights of the
    # loss values; for a scalar loss, upstream times grad()
    vjp = spec.reduction == "none"
    weights = f", sample_weight={upstream}" if vjp else ""
    if vjp:
        scaled = f"({grads},)" if len(spec.targets) == 1 else f"tuple({grads})"
    else:
        scaled = f"({upstream} * {grads},)" if len(spec.targets) == 1 else \
            f"tuple({upstream} * {g} for {g} in {grads})"
    return f'''def loss_with_gradient({args}{spec.keyword_params}):
    """loss() whose gradient (by the targets {targets}) is the symbolic grad(), via tf.custom_gradient."""

    @{tf}.custom_gradient
    def {inner}({targets}):
        def {backward}({upstream}):
            {grads} = {grad}({args}{kw}{weights})
            return {scaled}
        return {loss}({args}{kw}), {backward}

    return {inner}({targets})'''


def _keras_helpers(ns) -> str:
    tf = ns.glob("tf")
    a = ns.scope()
    x1, x2, r1, r2 = a["x1"], a["x2"], a["r1"], a["r2"]
    b = ns.scope()
    labels, scores = b["labels"], b["scores"]
    c = ns.scope()
    cls, config, formula, other, saved = c["cls"], c["config"], c["formula"], c["other"], c["saved"]
    return f'''def {ns.glob("_same_rank")}({x1}, {x2}):
    """Keras' rank matching of y_true and y_pred: when their ranks differ by one and the larger ends in
    an axis of 1, that axis is squeezed, or (for a rank-1 partner) added to the partner."""
    {r1}, {r2} = len({x1}.shape), len({x2}.shape)
    if {r1} == {r2} + 1 and {x1}.shape[-1] == 1:
        if {r2} == 1:
            return {x1}, {tf}.expand_dims({x2}, -1)
        return {tf}.squeeze({x1}, -1), {x2}
    if {r2} == {r1} + 1 and {x2}.shape[-1] == 1:
        if {r1} == 1:
            return {tf}.expand_dims({x1}, -1), {x2}
        return {x1}, {tf}.squeeze({x2}, -1)
    return {x1}, {x2}


def {ns.glob("_label_rank")}({labels}, {scores}):
    """Integer labels beside scores: a trailing axis of 1 on the labels is dropped, as Keras' sparse losses do."""
    if len({labels}.shape) == len({scores}.shape) and {labels}.shape[-1] == 1:
        return {tf}.squeeze({labels}, -1)
    return {labels}


def {ns.glob("_keras_from_config")}({cls}, {config}):
    """The loss of a saved config: this class when the saved formula is this module's, else the loaded
    class registered for the saved formula; a clear error when none is loaded."""
    {config} = dict({config})
    {formula} = {config}.pop("formula", {cls}.FORMULA)
    {saved} = {config}.pop("regenerate", None)
    if {formula} == {cls}.FORMULA:
        return {cls}(**{config})
    {other} = {tf}.keras.utils.get_registered_object(f"{{{cls}.REGISTERED}}_{{{formula}}}")
    if {other} is None:
        raise ValueError(
            f"the saved loss {{{config}.get('name')!r}} is the formula {{{formula}}}, but the loaded module defines "
            f"{{{cls}.__name__}} as the formula {{{cls}.FORMULA}} and no module of the saved formula is loaded; "
            f"regenerate it with: {{{saved} or 'losscomp compile (the saved source) --backend tensorflow'}} "
            f"and import the file before loading the model")
    return {other}.from_config({{**{config}, "formula": {formula}}})'''


def _per_sample(spec, tf: str, l: str) -> list[str]:
    """Statements that turn the loss values `l` into one value per sample (or per position, as Keras'
    own losses average over the last axis only)."""
    if spec.elementwise:
        return [f"return {tf}.reduce_mean({l}, axis=-1) if len({l}.shape) > 0 else {l}"]
    if spec.squeeze == "sample":
        return [f"return {tf}.reshape({l}, {tf}.shape({l})[:1])"]
    if spec.squeeze == "all":
        return [f"return {tf}.reshape({l}, [])"]
    if spec.squeeze is not None:
        return [f"return {tf}.squeeze({l}, axis={spec.squeeze})"]
    return [f"return {tf}.reduce_mean({l}, axis=list(range(1, len({l}.shape)))) if len({l}.shape) > 1 else {l}"]


def _keras_class(spec, ns) -> str:
    tf, values = ns.glob("tf"), ns.glob("values")
    class_name = ns.glob(spec.class_name)
    truths, preds = sides(spec)
    params = [n for n, _ in spec.parameters]
    s = ns.scope()
    self_, cls, config, kwargs = s["self"], s["cls"], s["config"], s["kwargs"]
    m = ns.scope()
    me, l = m["self"], m["l"]
    y_true, y_pred = "y_true", "y_pred"  # Keras' names; the scope's locals never take them
    local = {a: m.local(f"arg_{a}") for a in spec.arguments}
    body: list[str] = []
    if len(truths) == 1 and len(preds) == 1:
        local[truths[0]], local[preds[0]] = y_true, y_pred
    else:
        for packed, names in ((y_pred, preds), (y_true, truths)):
            if len(names) == 1:
                local[names[0]] = packed
            elif names:
                body.append(f"{', '.join(local[n] for n in names)} = {tf}.split({packed}, {len(names)}, axis=-1)")
    if len(truths) == 1:
        truth, first = truths[0], preds[0]
        role = spec.role(truth)[0]
        if role == "index":
            body.append(f"{local[truth]} = {ns.glob('_label_rank')}({local[truth]}, {local[first]})")
        elif role == "element" and spec.role(first)[0] == "element":
            body.append(f"{local[truth]}, {local[first]} = {ns.glob('_same_rank')}({local[truth]}, {local[first]})")
    call_args = ", ".join(local[a] for a in spec.arguments)
    call_kw = "".join(f", {n}={me}.{n}" for n in params)
    body.append(f"{l} = {values}({call_args}{call_kw})")
    body += _per_sample(spec, tf, l)
    keras_reduction = {"mean": "sum_over_batch_size", "sum": "sum", "none": "none"}[spec.reduction]
    init = "".join(f"{n}={v!r}, " for n, v in spec.parameters)
    assign = "".join(f"\n        {self_}.{n} = {n}" for n in params)
    config_items = "".join(f", {n!r}: {self_}.{n}" for n in params)
    formula = formula_hash(spec)
    registered = f"{PACKAGE}>{class_name}"
    if truths:
        true_text = (f"y_true is {truths[0]}" if len(truths) == 1
                     else f"y_true packs {', '.join(truths)} along the last axis")
    else:
        true_text = "y_true is not used (pass any array of the batch size)"
    pred_text = f"y_pred is {preds[0]}" if len(preds) == 1 else \
        f"y_pred packs {', '.join(preds)} along the last axis (equal parts)"
    per = "averaged over the last axis" if spec.elementwise else "one value per sample"
    doc = textwrap.wrap(f"{spec.name} as a Keras loss for model.compile(loss=...): {true_text}, {pred_text}; "
                        f"{per}, then Keras' sample_weight, dtype policy and reduction ({keras_reduction!r} by "
                        f"default). Saved configs load only with this formula ({formula}).", 93)
    doc_text = '"""' + "\n    ".join(doc) + '"""'
    lines = "\n        ".join(body)
    return f'''@{tf}.keras.utils.register_keras_serializable(package={PACKAGE!r}, name={f"{class_name}_{formula}"!r})
class {class_name}({tf}.keras.losses.Loss):
    {doc_text}

    Y_TRUE = {truths!r}  # what y_true holds (packed along the last axis when several)
    Y_PRED = {preds!r}  # what y_pred holds
    FORMULA = {formula!r}  # hash of the formula: its values, parameters and targets
    REGISTERED = {registered!r}
    REGENERATE = {regenerate_command(spec)!r}

    def __init__({self_}, *, {init}reduction={keras_reduction!r}, name={spec.name!r}, **{kwargs}):
        {tf}.keras.losses.Loss.__init__({self_}, reduction=reduction, name=name, **{kwargs}){assign}

    def call({me}, {y_true}, {y_pred}):
        {lines}

    def get_config({self_}):
        return {{**{tf}.keras.losses.Loss.get_config({self_}), 'dtype': {self_}.dtype{config_items},
                'formula': {self_}.FORMULA, 'regenerate': {self_}.REGENERATE}}

    @classmethod
    def from_config({cls}, {config}):
        return {ns.glob("_keras_from_config")}({cls}, {config})


# saved files carry the plain name; from_config picks the class of the saved formula
{class_name} = {tf}.keras.utils.register_keras_serializable(package={PACKAGE!r}, name={class_name!r})({class_name})'''
