"""``check_grads``: a gradient checker users can run on their own kernels.

It compares, in random directions ``v`` (inputs) and ``w`` (outputs), the directional derivative
``<w, J v>`` from central finite differences of the primal (with Richardson extrapolation, so
the truncation error is fourth order) against ``<J^T w, v>`` from adsrc's adjoint.  Every
evaluation runs on copies of the arguments, so the caller's arrays are left as they were.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from adsrc.api import Differentiable
from adsrc.errors import ArgumentError
from adsrc.pipeline import RETURN_OUTPUT
from adsrc.runtime.arguments import is_sparse


@dataclass
class CheckReport:
    """Per direction: (finite-difference value, adjoint value, relative error)."""

    directions: list = field(default_factory=list)

    @property
    def max_error(self):
        """The largest relative error; NaN if any is (a NaN adjoint or finite difference
        confirms nothing)."""
        errors = [error for _, _, error in self.directions]
        return math.nan if any(math.isnan(error) for error in errors) else max(errors,
                                                                               default=0.0)

    def __str__(self):
        rows = [f"  direction {k}: finite differences {fd:.15g}, adjoint {ad:.15g}, "
                f"relative error {error:.2e}" for k, (fd, ad, error) in enumerate(self.directions)]
        return "\n".join(rows)


def _copy(args):
    return [arg.copy() if isinstance(arg, np.ndarray) or is_sparse(arg) else arg
            for arg in args]


def _values(arg):
    """What a derivative is taken with respect to: a sparse matrix's stored values."""
    return arg.data if is_sparse(arg) else arg


def _moved(arg, delta, t):
    """``arg + t delta``, for a sparse matrix on its stored values."""
    if is_sparse(arg):
        moved = arg.copy()
        moved.data = moved.data + t * delta
        return moved
    return arg + t * delta


def check_grads(f, args, wrt, outputs=None, *, directions=3, rtol=1e-7, step=1e-4, seed=0,
                backend=None):
    """Check the adjoint of ``f`` at ``args``; raises AssertionError with a report on mismatch."""
    kernel = Differentiable(f, wrt, outputs, backend)
    if not (isinstance(directions, (int, np.integer)) and directions >= 1):
        raise ArgumentError(f"check_grads: directions must be an int of at least 1 (the "
                            f"number of directions checked), got {directions!r}")
    if not (isinstance(step, (int, float)) and math.isfinite(step) and step > 0):
        raise ArgumentError(f"check_grads: step must be a positive float, got {step!r}")
    if not (isinstance(rtol, (int, float)) and math.isfinite(rtol) and rtol >= 0):
        raise ArgumentError(f"check_grads: rtol must be a float of at least 0, got {rtol!r}")
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError) as error:
        raise ArgumentError(f"check_grads: seed must be what numpy.random.default_rng takes (an "
                            f"int of at least 0), got {seed!r}: {error}") from None
    params = kernel.params
    outs = sorted(kernel._outputs_of_call(args))
    kernel.check_distinct_before_copies(args)     # the evaluations work on copies
    h = step

    def outputs_at(direction, t):
        values = _copy(args)
        for name, delta in direction.items():
            position = params.index(name)
            values[position] = _moved(values[position], delta, t)
        result = kernel.fn(*values)
        return {out: (result if out == RETURN_OUTPUT else values[params.index(out)])
                for out in outs}

    def projected(direction, weights, t):
        values = outputs_at(direction, t)
        return sum(float(np.sum(weights[out] * values[out])) for out in outs)

    report = CheckReport()
    for _ in range(directions):
        direction = {name: _random_like(rng, _values(args[params.index(name)]))
                           * _scale(_values(args[params.index(name)]))
                     for name in kernel.wrt}
        reference = outputs_at({}, 0.0)
        weights = {out: _random_like(rng, reference[out]) for out in outs}

        def central(t):
            return (projected(direction, weights, t) - projected(direction, weights, -t)) / (2 * t)

        fd = (4.0 * central(h / 2) - central(h)) / 3.0
        bars = {out + "_bar": np.array(weights[out], dtype=float) for out in outs
                if out != RETURN_OUTPUT}
        if RETURN_OUTPUT in outs:
            bars["out_bar"] = float(weights[RETURN_OUTPUT])
        results = kernel.adjoint(*_copy(args), **bars)
        ad = sum(float(np.sum(direction[name] * _values(result)))
                 for name, result in zip(kernel.wrt, results))
        magnitude = abs(projected({}, weights, 0.0))
        error = abs(fd - ad) / max(abs(fd), abs(ad), 1e-10 * max(1.0, magnitude))
        report.directions.append((fd, ad, error))
    if not report.max_error <= rtol:
        raise AssertionError(f"check_grads({kernel.fn.__name__}): adjoint and finite differences "
                             f"disagree (rtol {rtol:g}):\n{report}")
    return report


def _scale(value):
    """How far a finite-difference step moves an argument, per unit of ``step``: by its own
    largest magnitude (at least 1).  One scale for all arguments, the largest, moved a vector of
    ones as far as a matrix of eights beside it, and the truncation error of a polynomial of
    degree eight in that vector passed ``rtol``: a false alarm about a right adjoint."""
    return max(1.0, float(np.max(np.abs(value)))) if np.size(value) else 1.0


def _random_like(rng, value):
    if isinstance(value, np.ndarray):
        return rng.standard_normal(value.shape)
    return float(rng.standard_normal())
