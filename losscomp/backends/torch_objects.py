"""PyTorch framework objects of an emitted module: an autograd.Function whose backward is the symbolic
gradient (saving only the inputs), and an nn.Module that behaves as the torch.nn losses do.

The nn.Module `<Name>Loss`:
  forward(input, target, ...)   PyTorch's order: `input` is the prediction (the definition's first
                                target), `target` the truth (its first other argument), then the
                                remaining arguments in the definition's order; a loss whose arguments
                                are all targets (triplet) keeps the definition's order. The plain
                                functions keep the definition's order.
  reduction='mean'|'sum'|'none' as every torch.nn loss (default: the module's own reduction);
                                'none' gives one value per element (per sample for a per-sample loss).
  parameters                    keyword arguments of the constructor, kept as attributes that may
                                change between calls; a tensor with requires_grad (an nn.Parameter
                                is registered with the module) gets its gradient.
  shapes                        an input and a target of one rank whose broadcast is larger than the
                                input are an error (PyTorch warns: "likely lead to incorrect results").

The autograd.Function `<Name>LossFunction.apply(reduction, *arguments, *parameters)` takes the
definition's order. Its backward gives every tensor input that needs one a gradient: the targets get
the symbolic grad() (weighted by the incoming gradient, so reduction='none' works too); the other
arguments (a truth that is itself the output of a network) and tensor parameters get torch autograd
of values(), the loss values as the module computes them.

Every name these templates introduce comes from the module's `Namespace`: a loss may name an
argument `upstream`, `ctx`, `grad`, `input` or `torch` without changing what the backward computes.
"""

from __future__ import annotations

import textwrap

from ..errors import LossDefinitionError

# attributes an nn.Module relies on: a loss parameter of one of these names cannot be an attribute
RESERVED_ATTRIBUTES = frozenset({
    "training", "forward", "reduction", "train", "eval", "to", "cuda", "cpu", "type", "float", "double",
    "half", "apply", "parameters", "buffers", "children", "modules", "state_dict", "load_state_dict",
    "register_buffer", "register_parameter", "zero_grad", "extra_repr", "dump_patches", "call_super_init",
    "ORDER"})


def _roles(spec) -> tuple[str | None, str | None]:
    """(prediction, truth): the first target, and the first argument that is not a target."""
    prediction = spec.targets[0]
    truth = next((a for a in spec.arguments if a not in spec.targets), None)
    return prediction, truth


def forward_order(spec) -> tuple[str, ...]:
    """The definition's arguments in the order nn.Module.forward takes them."""
    prediction, truth = _roles(spec)
    if truth is None:
        return tuple(spec.arguments)
    return (prediction, truth, *(a for a in spec.arguments if a not in (prediction, truth)))


def _check_parameter_names(spec) -> None:
    for name, _ in spec.parameters:
        if name in RESERVED_ATTRIBUTES or name.startswith("_"):
            raise LossDefinitionError(
                f"the parameter '{name}' would replace the nn.Module attribute of that name (the torch module "
                f"takes parameters as attributes, and reduction= as every torch.nn loss); choose another name")


def framework_objects(spec, ns) -> str:
    _check_parameter_names(spec)
    g = ns.glob
    names = {n: g(n) for n in ("torch", "values", "grad", "_targets_vjp", "_reduction", "_same_shape")}
    names["function"] = g(spec.class_name + "Function")
    names["class"] = g(spec.class_name)
    return "\n\n\n".join([_vjp(spec, ns, names), _checks(ns, names), _function(spec, ns, names),
                             _module(spec, ns, names)])


def _vjp(spec, ns, n) -> str:
    """sum(weights * l) differentiated by the targets, through grad(sample_weight=...)."""
    s = ns.scope()
    shape, weights, inputs, parameters, gs = s["shape"], s["weights"], s["inputs"], s["parameters"], s["g"]
    head = f"def {n['_targets_vjp']}({shape}, {weights}, {inputs}, {parameters}):"
    if spec.reduction in ("sum", "none"):
        return f'''{head}
    """d sum(weights * l) / d targets over the loss values l: grad() of this module (reduction
    {spec.reduction!r}) takes sample_weight as the weight of each loss value."""
    {gs} = {n["grad"]}(*{inputs}, **{parameters}, sample_weight={weights})
    return {gs} if isinstance({gs}, tuple) else ({gs},)'''
    total, sign, part, mass, safe, scale, x, a, b = (s[k] for k in ("total", "sign", "part", "mass", "safe",
                                                                    "scale", "x", "a", "b"))
    torch = n["torch"]
    return f'''{head}
    """d sum(weights * l) / d targets over the loss values l. grad() of this module (reduction 'mean')
    with sample_weight=w is sum(w dl) / sum(w): the positive and the negative part of the weights go
    through it separately, each scaled back by its sum (a part that is all zero contributes zero);
    one weight for all (reduction "mean" or "sum") is N times grad()."""
    if {weights}.dim() == 0:
        {gs} = {n["grad"]}(*{inputs}, **{parameters})
        {scale} = {weights} * {shape}.numel()
        return tuple({scale} * {x} for {x} in ({gs} if isinstance({gs}, tuple) else ({gs},)))
    {total} = None
    for {sign} in (1, -1):
        {part} = {torch}.relu({sign} * {weights}).expand({shape})
        {mass} = {part}.sum()
        {safe} = {torch}.where({mass} > 0, {part}, {torch}.ones_like({part}))
        {gs} = {n["grad"]}(*{inputs}, **{parameters}, sample_weight={safe})
        {scale} = {torch}.where({mass} > 0, {sign} * {mass}, {torch}.zeros_like({mass}))
        {gs} = tuple({scale} * {x} for {x} in ({gs} if isinstance({gs}, tuple) else ({gs},)))
        {total} = {gs} if {total} is None else tuple({a} + {b} for {a}, {b} in zip({total}, {gs}))
    return {total}'''


def _checks(ns, n) -> str:
    s = ns.scope()
    reduction = s["reduction"]
    t = ns.scope()
    x_name, x, t_name, y, shape = t["x_name"], t["x"], t["t_name"], t["t"], t["shape"]
    torch = n["torch"]
    return f'''def {n["_reduction"]}({reduction}):
    """reduction= of a torch.nn loss."""
    if {reduction} not in ("mean", "sum", "none"):
        raise ValueError(f"{{{reduction}!r}} is not a valid value for reduction: 'mean', 'sum' or 'none'")
    return {reduction}


def {n["_same_shape"]}({x_name}, {x}, {t_name}, {y}):
    """An input and a target whose broadcast is larger than the input: an error (PyTorch's losses warn
    that this "will likely lead to incorrect results due to broadcasting")."""
    if not ({torch}.is_tensor({x}) and {torch}.is_tensor({y})) or {x}.shape == {y}.shape:
        return
    if {x}.dim() != {y}.dim() and {x}.dim() > 0 and {y}.dim() > 0:
        raise ValueError(f"{{{t_name}}} of shape {{tuple({y}.shape)}} and {{{x_name}}} of shape {{tuple({x}.shape)}} "
                         f"have different numbers of axes: broadcast, they would give "
                         f"{{tuple({torch}.broadcast_shapes({x}.shape, {y}.shape))}}; reshape one to the other")
    if {x}.dim() == {y}.dim():
        {shape} = {torch}.broadcast_shapes({x}.shape, {y}.shape)
        if {shape} != {x}.shape:
            raise ValueError(f"{{{t_name}}} of shape {{tuple({y}.shape)}} broadcasts {{{x_name}}} of shape "
                             f"{{tuple({x}.shape)}} to {{tuple({shape})}}: the loss would run over values the "
                             f"prediction does not have; give both one shape")'''


def _docstring(text: str, indent: str = "    ", width: int = 100) -> str:
    """A class docstring, wrapped (the text is the emitter's own, with the loss's names)."""
    lines = textwrap.wrap(text, width - len(indent) - 3)
    return '"""' + f"\n{indent}".join(lines) + '"""'


def _squeezed(spec, l: str) -> str:
    """PyTorch's reduction='none' shape of the loss values `l`."""
    if spec.squeeze == "sample":
        return f"{l}.reshape({l}.shape[:1])"
    if spec.squeeze == "all":
        return f"{l}.reshape(())"
    if spec.squeeze is not None:
        return f"{l}.squeeze({spec.squeeze})"
    return l


def _function(spec, ns, n) -> str:
    params = [p for p, _ in spec.parameters]
    k, m = len(spec.arguments), len(params)
    torch, values = n["torch"], n["values"]
    targets = repr(tuple(spec.arguments.index(t) for t in spec.targets))
    names = repr(tuple(params))
    f = ns.scope()
    ctx, reduction, inputs, tensors, numbers, l, x = (f[k_] for k_ in ("ctx", "reduction", "inputs", "tensors",
                                                                        "parameters", "l", "x"))
    keywords = f"dict(zip({names}, {numbers}))" if params else "{}"
    forward = f'''    @staticmethod
    def forward({ctx}, {reduction}, *{inputs}):
        {tensors} = tuple({x} if {torch}.is_tensor({x}) else {torch}.as_tensor({x}) for {x} in {inputs}[:{k}])
        {numbers} = {inputs}[{k}:]
        {ctx}.save_for_backward(*{tensors})
        {ctx}.parameters = {numbers}
        {ctx}.reduction = {reduction}
        {l} = {values}(*{tensors}, **{keywords})
        {ctx}.shape = {l}.shape
        if {reduction} == "mean":
            return {l}.mean()
        if {reduction} == "sum":
            return {l}.sum()
        return {_squeezed(spec, l)}'''
    b = ns.scope()
    ctx, upstream, tensors, numbers, weights, grads, keywords_, symbolic, others, leaves, lv, autodiff, i, g, x = (
        b[k_] for k_ in ("ctx", "upstream", "tensors", "parameters", "weights", "grads", "keywords", "symbolic",
                         "others", "leaves", "l", "autodiff", "i", "g", "x"))
    keywords_b = f"dict(zip({names}, {numbers}))" if params else "{}"
    leaf_keywords = f"dict(zip({names}, {leaves}[{k}:]))" if params else "{}"
    backward = f'''    @staticmethod
    def backward({ctx}, {upstream}):
        {tensors} = {ctx}.saved_tensors
        {numbers} = {ctx}.parameters
        {keywords_} = {keywords_b}
        if {ctx}.reduction == "mean":
            {weights} = {upstream} / max(int({ctx}.shape.numel()), 1)
        elif {ctx}.reduction == "sum":
            {weights} = {upstream}
        else:
            {weights} = {upstream}.reshape({ctx}.shape)
        {grads} = [None] * {k + m}
        if any({ctx}.needs_input_grad[1 + {i}] for {i} in {targets}):
            {symbolic} = {n["_targets_vjp"]}({ctx}.shape, {weights}, {tensors}, {keywords_})
            for {i}, {g} in zip({targets}, {symbolic}):
                {grads}[{i}] = {g}
        # any other tensor input that needs a gradient: torch autograd of the loss values
        {others} = [{i} for {i} in range({k + m}) if {ctx}.needs_input_grad[1 + {i}] and {i} not in {targets}]
        if {others}:
            with {torch}.enable_grad():
                {leaves} = [{x}.detach().requires_grad_({i} in {others}) if {torch}.is_tensor({x}) else {x}
                    for {i}, {x} in enumerate((*{tensors}, *{numbers}))]
                {lv} = {values}(*{leaves}[:{k}], **{leaf_keywords})
                {autodiff} = {torch}.autograd.grad(
                    {lv}, [{leaves}[{i}] for {i} in {others}], {weights}.expand({lv}.shape), allow_unused=True)
            for {i}, {g} in zip({others}, {autodiff}):
                {grads}[{i}] = {g} if {g} is not None else {torch}.zeros_like({leaves}[{i}])
        return (None, *{grads})'''
    signature = ", ".join((*spec.arguments, *params))
    doc = _docstring(f"{spec.name} as an autograd.Function: apply(reduction, {signature}), in the definition's "
                     f"order. backward: the symbolic grad() for {', '.join(spec.targets)}; torch autograd of "
                     "values() for any other tensor input that needs a gradient. Only the inputs are saved.")
    return f'''class {n["function"]}({torch}.autograd.Function):
    {doc}

{forward}

{backward}'''


def _module(spec, ns, n) -> str:
    params = [p for p, _ in spec.parameters]
    prediction, truth = _roles(spec)
    order = forward_order(spec)
    s = ns.scope()
    self_ = s["self"]
    role_names: dict[str, str] = {}
    if truth is not None:
        for argument, wanted in ((prediction, "input"), (truth, "target")):
            clash = wanted in spec.arguments and wanted != argument
            role_names[argument] = s.local(wanted) if clash else wanted
    forward_names = [role_names.get(a, a) for a in order]
    by_argument = dict(zip(order, forward_names))
    init_params = "".join(f"{p}={v!r}, " for p, v in spec.parameters)
    set_params = "".join(f"\n        {self_}.{p} = {p}" for p in params)
    apply_args = ", ".join([f"{self_}.reduction", *(by_argument[a] for a in spec.arguments),
                            *(f"{self_}.{p}" for p in params)])
    if truth is not None:
        mapping = (f"forward({', '.join(forward_names)}) in PyTorch\'s order: {forward_names[0]} is {prediction}, "
                   f"{forward_names[1]} is {truth}")
    else:
        mapping = f"forward({', '.join(forward_names)}), the definition\'s order"
    check = ""
    if spec.elementwise and truth is not None and spec.role(prediction)[0] == "element" \
            and spec.role(truth)[0] == "element":
        x, t = by_argument[prediction], by_argument[truth]
        check = f"\n        {n['_same_shape']}({x!r}, {x}, {t!r}, {t})"
    learnable = (f"; {', '.join(params)} may change between calls and may be tensors with requires_grad "
                 "(an nn.Parameter is registered with the module)") if params else ""
    doc = _docstring(f'{spec.name} as a torch.nn loss: {mapping}. reduction="mean" | "sum" | "none" as every '
                     f"torch.nn loss{learnable}.")
    return f'''class {n["class"]}({n["torch"]}.nn.Module):
    {doc}

    ORDER = {tuple(order)!r}  # the definition\'s arguments in the order forward takes them

    def __init__({self_}, *, {init_params}reduction={spec.reduction!r}):
        {n["torch"]}.nn.Module.__init__({self_})
        {self_}.reduction = {n["_reduction"]}(reduction){set_params}

    def forward({self_}, {", ".join(forward_names)}):{check}
        return {n["function"]}.apply({apply_args})'''
