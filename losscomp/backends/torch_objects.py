"""PyTorch framework objects of an emitted module: an autograd.Function whose backward is the symbolic
gradient (saving only the inputs) and an nn.Module.

Every name these templates introduce comes from the module's `Namespace`: a loss may name an
argument `upstream`, `ctx` or `grad` without changing what the backward computes.
"""

from __future__ import annotations


def framework_objects(spec, ns) -> str:
    torch, loss, grad = ns.glob("torch"), ns.glob("loss"), ns.glob("grad")
    scope = ns.scope()
    ctx, upstream, grads, saved = (scope.local(n) for n in ("ctx", "upstream", "grads", "saved"))
    self_ = scope.local("self")
    args = ", ".join(spec.arguments)
    params = [n for n, _ in spec.parameters]
    forward_args = ", ".join([ctx, *spec.arguments, *params])
    keep = f"\n        {ctx}.parameters = ({', '.join(params)}{',' if len(params) == 1 else ''})" if params else ""
    names = repr(tuple(params))
    call_params = f", **dict(zip({names}, {ctx}.parameters))" if params else ""
    # the vector-Jacobian product: for reduction='none' the gradient of sum(upstream * l), which is
    # grad() with upstream as the weights; for a scalar loss, upstream times grad()
    vjp = spec.reduction == "none"
    weights = f", sample_weight={upstream}" if vjp else ""
    per_input = []
    for name in spec.arguments:
        if name in spec.targets:
            index = spec.targets.index(name)
            per_input.append(f"{grads}[{index}]" if vjp else f"{upstream} * {grads}[{index}]")
        else:
            per_input.append("None")
    per_input += ["None"] * len(params)
    wrap = f"{grads} = ({grads},)\n        " if len(spec.targets) == 1 else ""
    init_params = "".join(f", {n}={v!r}" for n, v in spec.parameters)
    init_sig = f"{self_}, *{init_params}" if params else self_
    set_params = "".join(f"\n        {self_}.{n} = {n}" for n in params)
    apply_args = ", ".join([*spec.arguments, *(f"{self_}.{n}" for n in params)])
    return f'''
class {spec.class_name}Function({torch}.autograd.Function):
    """The loss as an autograd.Function: backward is the symbolic gradient; only inputs are saved."""

    @staticmethod
    def forward({forward_args}):
        {ctx}.save_for_backward({args}){keep}
        return {loss}({args}{spec.pass_params})

    @staticmethod
    def backward({ctx}, {upstream}):
        {saved} = {ctx}.saved_tensors
        {grads} = {grad}(*{saved}{call_params}{weights})
        {wrap}return {", ".join(per_input)}


class {spec.class_name}({torch}.nn.Module):
    """nn.Module form of the loss; parameters are attributes that may change between calls."""

    def __init__({init_sig}):
        super().__init__(){set_params}

    def forward({self_}, {args}):
        return {spec.class_name}Function.apply({apply_args})
'''
