"""The high-precision reference: a compiled loss evaluated at 50 significant digits with mpmath.

    values        the loss of every element (or sample), before the batch reduction
    gradient      d(sum of the values)/d target: the SymPy gradient for an elementwise loss; for one
                  that reduces per sample, central differences of the values at 50 digits
    hessian       likewise: the diagonal d2/dt_i dt_j per element, or blocks (batch, d, d) per sample
    differences   central differences at 50 digits, whatever the loss: an independent check of `derive`

A step h = 1e-25 times the distance to the domain's edge (or the row's size), computed with 60 more
digits than the values need, leaves an error far below float64's; a
difference taken across a kink is not a derivative, so callers skip the points `kinks.at_kinks` marks.
"""

from __future__ import annotations

from typing import Mapping

import mpmath
import numpy as np

from .evaluate import Model, MpKit

DIGITS = 50
STEP_1 = mpmath.mpf("1e-25")
STEP_2 = mpmath.mpf("1e-25")
GUARD = 60          # extra digits for differences: the step's 25 digits, twice, and a margin


def step_scale(x: np.ndarray, domain: str) -> np.ndarray:
    """How far x is from the edge of its domain: |x| (1 at 0) for real and positive values,
    min(x, 1 - x) for probabilities; a difference step is a small multiple of it."""
    x = np.abs(np.asarray(x, dtype=np.float64))
    if domain == "unit":
        return np.minimum(x, 1 - x)
    return np.where(x > 0, x, 1.0)


class Oracle:
    """50-digit values and derivatives of one compiled loss at given inputs (NumPy arrays)."""

    def __init__(self, loss, digits: int = DIGITS):
        self.loss = loss
        self.digits = digits
        self.model = Model(loss.definition, {p.name: float(p.default) for p in loss.definition.parameters})
        self.elementwise = getattr(loss.derivation, "elementwise", True)
        self.targets = tuple(loss.targets)
        self.kit = MpKit()
        self.domains = {a.name: a.domain for a in loss.definition.arguments}

    # -- values --------------------------------------------------------------------------------------
    def _values(self, inputs: Mapping[str, np.ndarray], kit_inputs: dict | None = None):
        env = self.model.environment(inputs, self.kit)
        if kit_inputs:
            for symbol, value in kit_inputs.items():
                env[symbol] = value
        value = self.model.evaluate(self.loss.derivation.value, inputs, self.kit, env)
        shape = self.model.context_shape(inputs)
        if not self.elementwise:
            # keep the per-sample shape the reductions give, but broadcast anything elementwise
            shapes = [np.shape(env[s]) for s in self.model.reductions if s in env] + [np.shape(value)]
            shape = np.broadcast_shapes(*shapes) if np.ndim(value) else np.broadcast_shapes(*shapes)
        return np.broadcast_to(np.asarray(value, dtype=object), shape)

    def values(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The loss values (object array of mpf), shaped as the emitted `reduction='none'` loss."""
        with mpmath.workdps(self.digits):
            return np.array(self._values(inputs), dtype=object)

    # -- derivatives ---------------------------------------------------------------------------------
    def gradient(self, inputs: Mapping[str, np.ndarray], target: str) -> np.ndarray:
        """d(sum of values)/d target, shaped like the target (object array of mpf)."""
        if self.elementwise:
            index = self.targets.index(target)
            with mpmath.workdps(self.digits):
                g = self.model.evaluate(self.loss.derivation.gradient[index], inputs, self.kit)
                return self._to_target(g, inputs, target)
        return self.differences(inputs, target)

    def hessian(self, inputs: Mapping[str, np.ndarray], first: str, second: str) -> np.ndarray:
        """Elementwise: the diagonal d2/dt_i dt_j, target-shaped; per sample: blocks (batch, d, d)."""
        if self.elementwise:
            i, j = self.targets.index(first), self.targets.index(second)
            with mpmath.workdps(self.digits):
                h = self.model.evaluate(self.loss.derivation.hessian[i][j], inputs, self.kit)
                return self._to_target(h, inputs, first)
        return self.second_differences(inputs, first, second)

    def expression_differences(self, expr, inputs: Mapping[str, np.ndarray], by: str) -> np.ndarray:
        """Central differences at 50 digits of an elementwise expression (a gradient) by one argument."""
        x = np.asarray(inputs[by], dtype=np.float64)
        symbol = next(a.symbol for a in self.model.arguments if a.name == by)
        with mpmath.workdps(self._digits_for(inputs, by)):
            base = self.kit.array(x)
            h = self._steps(x, STEP_1, by)
            values = []
            for sign in (1, -1):
                env = self.model.environment(inputs, self.kit)
                env[symbol] = base + sign * h
                values.append(np.asarray(self.model.evaluate(expr, inputs, self.kit, env), dtype=object))
            return self._to_target((values[0] - values[1]) / (2 * h), inputs, by)

    def _to_target(self, values, inputs, target) -> np.ndarray:
        shape = np.shape(inputs[target])
        full = np.broadcast_to(np.asarray(values, dtype=object), self.model.context_shape(inputs))
        if full.shape == shape:
            return np.array(full, dtype=object)
        lead = full.ndim - len(shape)
        summed = full.sum(axis=tuple(range(lead))) if lead else full
        axes = tuple(i for i, n in enumerate(shape) if n == 1 and summed.shape[i] != 1)
        return np.array(summed.sum(axis=axes, keepdims=True) if axes else summed, dtype=object)

    def _columns(self, inputs, target):
        """Groups of positions of `target` that can move together: one value never sees the others'."""
        x = np.asarray(inputs[target], dtype=np.float64)
        if self.elementwise:
            return [np.ones(x.shape, dtype=bool)]
        if any(r.axis == "all" for r in self.model.reductions.values()):
            masks = []
            for index in np.ndindex(x.shape):
                m = np.zeros(x.shape, dtype=bool)
                m[index] = True
                masks.append(m)
            return masks
        masks = []
        for index in np.ndindex(x.shape[1:]):
            m = np.zeros(x.shape, dtype=bool)
            m[(slice(None),) + index] = True
            masks.append(m)
        return masks

    def _digits_for(self, inputs, *names) -> int:
        """Digits for differences: a step of 1e-25 of the smallest distance must still move a value
        of the size of the largest input, twice over for second differences."""
        smallest, largest = 1.0, 1.0
        for name in names:
            x = np.asarray(inputs[name], np.float64)
            d = self._scale(x, name)
            d = d[d > 0]
            if d.size:
                smallest = min(smallest, float(d.min()))
        for a in self.model.arguments:
            x = np.abs(np.asarray(inputs[a.name], np.float64))
            if x.size:
                largest = max(largest, float(x.max()))
        return self.digits + GUARD + int(max(0.0, -np.log10(smallest))) + 2 * int(np.log10(largest))

    def _scale(self, x: np.ndarray, name: str) -> np.ndarray:
        """The distance a step is a fraction of: to the domain's edge, and for a per-sample loss (whose
        entries meet in sums) no smaller than the row's largest entry unless the domain says so."""
        domain = self.domains[name]
        distance = step_scale(x, domain)
        if self.elementwise or x.ndim < 2:
            return distance
        row = np.maximum(np.abs(x).reshape(x.shape[0], -1).max(axis=1), 1.0).reshape((-1,) + (1,) * (x.ndim - 1))
        if domain in ("real",):
            return np.broadcast_to(row, x.shape).astype(np.float64)
        return np.minimum(distance, row)

    def _steps(self, x: np.ndarray, size, name: str) -> np.ndarray:
        distance = self._scale(x, name)
        return np.array([size * mpmath.mpf(d) for d in distance.reshape(-1).tolist()],
                        dtype=object).reshape(x.shape)

    def differences(self, inputs: Mapping[str, np.ndarray], target: str) -> np.ndarray:
        """Central differences of the sum of the values with respect to each entry of `target`."""
        x = np.asarray(inputs[target], dtype=np.float64)
        symbol = next(a.symbol for a in self.model.arguments if a.name == target)
        out = np.empty(x.shape, dtype=object)
        with mpmath.workdps(self._digits_for(inputs, target)):
            base = self.kit.array(x)
            h = self._steps(x, STEP_1, target)
            zero = mpmath.mpf(0)
            for mask in self._columns(inputs, target):
                plus = self._values(inputs, {symbol: base + np.where(mask, h, zero)})
                minus = self._values(inputs, {symbol: base - np.where(mask, h, zero)})
                delta = np.asarray(plus, dtype=object) - np.asarray(minus, dtype=object)
                out[mask] = (self._per_position(delta, x.shape) / (2 * h))[mask]
        return out

    def _per_position(self, delta, shape):
        """The change of the sum of values that moving each position caused."""
        delta = np.asarray(delta, dtype=object)
        if self.elementwise:
            return np.broadcast_to(delta, shape)
        if any(r.axis == "all" for r in self.model.reductions.values()):
            return np.broadcast_to(np.sum(delta), shape)
        rows = delta.reshape(delta.shape[0], -1).sum(axis=1)
        return np.broadcast_to(rows.reshape((-1,) + (1,) * (len(shape) - 1)), shape)

    def second_differences(self, inputs: Mapping[str, np.ndarray], first: str, second: str) -> np.ndarray:
        """d2(sum of values)/d first d second by central differences: blocks (batch, d, d) per sample."""
        x = np.asarray(inputs[first], dtype=np.float64)
        if x.ndim != 2 or any(r.axis == "all" for r in self.model.reductions.values()):
            raise NotImplementedError("Hessian blocks by differences need per-sample (batch, width) targets")
        batch, width = x.shape
        symbols = {a.name: a.symbol for a in self.model.arguments}
        out = np.empty((batch, width, width), dtype=object)
        x2 = np.asarray(inputs[second], dtype=np.float64)
        with mpmath.workdps(self._digits_for(inputs, first, second)):
            b1, b2 = self.kit.array(x), self.kit.array(x2)
            h1, h2 = self._steps(x, STEP_2, first), self._steps(x2, STEP_2, second)
            for j in range(width):
                for k in range(width):
                    total = 0
                    for s1, s2, sign in ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)):
                        d1 = np.full(x.shape, mpmath.mpf(0), dtype=object)
                        d1[:, j] = s1 * h1[:, j]
                        d2 = np.full(x.shape, mpmath.mpf(0), dtype=object)
                        d2[:, k] = s2 * h2[:, k]
                        shifted = ({symbols[first]: b1 + d1 + d2} if first == second
                                   else {symbols[first]: b1 + d1, symbols[second]: b2 + d2})
                        v = np.asarray(self._values(inputs, shifted), dtype=object)
                        total = total + sign * v.reshape(batch, -1).sum(axis=1)
                    out[:, j, k] = total / (4 * h1[:, j] * h2[:, k])
        return out

