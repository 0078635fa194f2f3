"""JAX framework objects of an emitted module: the loss with the symbolic derivatives as JAX's own.

- `loss_with_gradient`: a `jax.custom_vjp` whose backward is grad() (for reduction='none', grad()
  weighted by the incoming cotangent, which is exact for any shape). JAX's custom_vjp functions have
  no forward mode (jax.jvp, jax.jacfwd of the loss itself); second derivatives (jax.hessian, a grad
  of grad) are JAX's autodiff of grad(), the backward.
- `loss_with_jvp`: a `jax.custom_jvp` whose tangent is <grad(), dt>; grad() there is itself a
  custom_jvp whose tangent is hvp(), so forward and reverse mode use grad() and a second derivative
  (jax.hessian, jax.jacfwd(jax.grad(...)), jax.grad of jax.grad) uses hvp(). For reduction='none'
  the tangent is the transpose of the weighted grad(), and second derivatives are autodiff of grad().

Both use symbolic zeros to see which arguments are differentiated: differentiating by an argument
that is not a target (y, a parameter) is a ValueError, never a silent zero. Every name these
templates introduce comes from the module's `Namespace`.
"""

from __future__ import annotations


def framework_objects(spec, ns) -> str:
    jax, jnp = ns.glob("jax"), ns.glob("jnp")
    loss, grad, hvp = ns.glob("loss"), ns.glob("grad"), ns.glob("hvp")
    vjp_fn, vjp_fwd, vjp_bwd = ns.glob("_loss_vjp"), ns.glob("_loss_vjp_fwd"), ns.glob("_loss_vjp_bwd")
    jvp_fn, jvp_rule = ns.glob("_loss_jvp"), ns.glob("_loss_jvp_rule")
    grad_fn, grad_rule = ns.glob("_grad_jvp"), ns.glob("_grad_jvp_rule")
    refuse, is_zero, tangent_or_zeros = ns.glob("_refuse_nontargets"), ns.glob("_symbolic_zero"), ns.glob("_tangent")

    params = [n for n, _ in spec.parameters]
    inputs = [*spec.arguments, *params]            # the custom functions take parameters by position
    every = ", ".join(inputs)
    one = "," if len(inputs) == 1 else ""
    call_args = ", ".join(spec.arguments) + spec.pass_params
    targets = spec.targets
    k = len(targets)
    others = [name for name in inputs if name not in targets]

    def tupled(items) -> str:
        return items[0] if len(items) == 1 else "(" + ", ".join(items) + ")"

    def refusal(flags) -> str:
        """The line that refuses a derivative by a non-target, given each one's 'differentiated' test."""
        if not others:
            return ""
        return f"    {refuse}({tuple(others)!r}, ({', '.join(flags)}{',' if len(others) == 1 else ''}))\n"

    # -- shared helpers: a clear error instead of a silent zero derivative --------------------------
    scope = ns.scope()
    names, flags, name_, flag, tangent, like = (scope.local(n) for n in ("names", "flags", "name", "flag",
                                                                          "tangent", "like"))
    text = f'''
def {refuse}({names}, {flags}):
    """Only the targets ({", ".join(targets)}) have symbolic derivatives: refuse to differentiate by another
    argument (JAX would otherwise take the missing derivative as zero)."""
    for {name_}, {flag} in zip({names}, {flags}):
        if {flag}:
            raise ValueError(f"the symbolic derivatives are by {", ".join(targets)} only, not by {{{name_}}}: "
                             f"differentiate loss() for a derivative by {{{name_}}}")


def {is_zero}({tangent}):
    """Whether JAX passed a symbolic zero: the argument is not differentiated."""
    return isinstance({tangent}, {jax}.custom_derivatives.SymbolicZero)


def {tangent_or_zeros}({tangent}, {like}):
    """A target's tangent, zeros like the target for a symbolic zero."""
    return {jnp}.zeros_like({like}) if {is_zero}({tangent}) else {tangent}
'''

    # -- custom_vjp: the loss with grad() as its backward -------------------------------------------
    scope = ns.scope()
    residuals, upstream, grads = scope.local("residuals"), scope.local("upstream"), scope.local("grads")
    if spec.reduction == "none":   # d(sum of upstream * values) = grad weighted by upstream, for any shape
        backward = f"{grads} = {grad}({call_args}, sample_weight={upstream})"
        scaled = [grads if k == 1 else f"{grads}[{i}]" for i in range(k)]
    else:
        backward = f"{grads} = {grad}({call_args})"
        scaled = [f"{upstream} * {grads}" if k == 1 else f"{upstream} * {grads}[{i}]" for i in range(k)]
    fwd_args = ", ".join(f"{n}.value" for n in spec.arguments) + "".join(f", {n}={n}.value" for n in params)
    cotangents = [f"{jnp}.asarray({scaled[targets.index(n)]}, dtype={jnp}.result_type({n}))" if n in targets
                  else "None" for n in inputs]
    text += f'''

@{jax}.custom_vjp
def {vjp_fn}({every}):
    return {loss}({call_args})


def {vjp_fwd}({every}):
    """Each argument comes as (value, perturbed): symbolic zeros tell which ones are differentiated."""
{refusal([f"{n}.perturbed" for n in others])}    {residuals} = ({", ".join(f"{n}.value" for n in inputs)}{one})
    return {loss}({fwd_args}), {residuals}


def {vjp_bwd}({residuals}, {upstream}):
    {every}{one} = {residuals}
    if {is_zero}({upstream}):
        return ({", ".join("None" for _ in inputs)}{one})
    {backward}
    return ({", ".join(cotangents)}{one})


{vjp_fn}.defvjp({vjp_fwd}, {vjp_bwd}, symbolic_zeros=True)


def loss_with_gradient({", ".join(spec.arguments)}{spec.keyword_params}):
    """loss() with grad() as its backward (jax.custom_vjp), for jax.grad, jax.vjp and jax.value_and_grad.
    No forward mode (jax.jvp, jax.jacfwd): use loss_with_jvp; second derivatives are autodiff of grad()."""
    return {vjp_fn}({every})
'''

    # -- custom_jvp: grad() with hvp() as its tangent ----------------------------------------------
    scope = ns.scope()
    primals, tangents, vs = scope.local("primals"), scope.local("tangents"), scope.local("v")
    gradient, products = scope.local("gradient"), scope.local("products")
    d = {n: scope.local(f"d{n}") for n in inputs}
    unpack = f"    {every}{one} = {primals}\n    {', '.join(d.values())}{one} = {tangents}\n"
    text += f'''

@{jax}.custom_jvp
def {grad_fn}({every}):
    return {grad}({call_args})


def {grad_rule}({primals}, {tangents}):
    """The tangent of grad() is the Hessian-vector product hvp()."""
{unpack}{refusal([f"not {is_zero}({d[n]})" for n in others])}    {vs} = {tupled([f"{tangent_or_zeros}({d[t]}, {t})" for t in targets])}
    {gradient} = {grad}({call_args})
    {products} = {hvp}({", ".join(spec.arguments)}, {vs}{spec.pass_params})
    return {gradient}, {products}


{grad_fn}.defjvp({grad_rule}, symbolic_zeros=True)
'''

    # -- custom_jvp: the loss with <grad(), dt> as its tangent -------------------------------------
    scope = ns.scope()
    primals, tangents, value, tangent = (scope.local(n) for n in ("primals", "tangents", "value", "tangent"))
    gradient, weighted, u = scope.local("gradient"), scope.local("weighted"), scope.local("u")
    d = {n: scope.local(f"d{n}") for n in inputs}
    unpack = f"    {every}{one} = {primals}\n    {', '.join(d.values())}{one} = {tangents}\n"
    dts = [f"{tangent_or_zeros}({d[t]}, {t})" for t in targets]
    if spec.reduction == "none":
        # the tangent of every value is J dt: the transpose of the weighted gradient u -> J^T u
        body = (f"    def {weighted}({u}):\n"
                f"        return {grad}({call_args}, sample_weight={u})\n\n"
                f"    ({tangent},) = {jax}.linear_transpose({weighted}, {value})({tupled(dts)})\n")
    else:
        terms = [f"{jnp}.sum({gradient if k == 1 else f'{gradient}[{i}]'} * {dt})" for i, dt in enumerate(dts)]
        body = (f"    {gradient} = {grad_fn}({every})\n"
                f"    {tangent} = {' + '.join(terms)}\n")
    text += f'''

@{jax}.custom_jvp
def {jvp_fn}({every}):
    return {loss}({call_args})


def {jvp_rule}({primals}, {tangents}):
    """The tangent of the loss is <grad(), dt>, with grad() differentiable by its own rule."""
{unpack}{refusal([f"not {is_zero}({d[n]})" for n in others])}    {value} = {loss}({call_args})
{body}    return {value}, {jnp}.asarray({tangent}, dtype={value}.dtype)


{jvp_fn}.defjvp({jvp_rule}, symbolic_zeros=True)


def loss_with_jvp({", ".join(spec.arguments)}{spec.keyword_params}):
    """loss() whose derivatives are the symbolic ones in forward and reverse mode (jax.custom_jvp):
    jax.grad, jax.jvp and jax.jacfwd use grad(); a second derivative (jax.hessian,
    jax.jacfwd(jax.grad(...))) uses hvp(); higher ones are autodiff of hvp()."""
    return {jvp_fn}({every})
'''
    return text
