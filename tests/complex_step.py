"""Directional derivatives of plain Python kernels by the complex step, a method independent of
adsrc: run the kernel on ``args + i*h*v`` and read the imaginary parts of its outputs.  Exact to
rounding for kernels made of +, -, *, / and analytic functions (no abs, min, max).

Every float array runs as a complex copy, so that an output not differentiated with respect to
carries its imaginary part too; and a complex value stored into a float array (one the kernel
allocates itself) raises instead of dropping the imaginary part, which would give a wrong
reference without a sign."""

import warnings

import numpy as np
import pytest

import adsrc

STEP = 1e-30


def parameters(kernel):
    return list(kernel.__code__.co_varnames[:kernel.__code__.co_argcount])


def jvp(kernel, args, wrt, outputs, direction):
    """``{output: J v}`` for the directions ``direction[name]`` of the ``wrt`` arguments."""
    params = parameters(kernel)
    shifted = _shifted(kernel, args, wrt, direction)
    _run(kernel, shifted)
    return {out: np.imag(shifted[params.index(out)]) / STEP for out in outputs}


def value_derivative(kernel, args, wrt, direction):
    """The derivative of the value ``kernel`` returns, in the directions ``direction[name]``
    of the ``wrt`` arguments."""
    return float(np.imag(_run(kernel, _shifted(kernel, args, wrt, direction)))) / STEP


def _shifted(kernel, args, wrt, direction):
    shifted = []
    for param, arg in zip(parameters(kernel), args):
        if param in wrt:
            arg = np.asarray(arg, dtype=complex) + 1j * STEP * direction[param]
            arg = complex(arg) if np.ndim(arg) == 0 else arg
        elif isinstance(arg, np.ndarray):
            arg = arg.astype(complex) if arg.dtype.kind == "f" else arg.copy()
        shifted.append(arg)
    return shifted


def _run(kernel, args):
    with warnings.catch_warnings():
        warnings.simplefilter("error", np.exceptions.ComplexWarning)
        return kernel(*args)


def dot_product_test(f, kernel, args, wrt, outputs, rng):
    """``(<w, J v>, <J^T w, v>)``: the complex step against ``f.adjoint`` in random
    directions; the two must agree to rounding."""
    params = parameters(kernel)
    v = {p: rng.standard_normal(np.shape(args[params.index(p)])) for p in wrt}
    w = {o: rng.standard_normal(np.shape(args[params.index(o)])) for o in outputs}
    jv = jvp(kernel, args, wrt, outputs, v)
    forward = sum(float(np.sum(w[o] * jv[o])) for o in outputs)
    copies = [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]
    grads = f.adjoint(*copies, **{o + "_bar": w[o].copy() for o in outputs})
    reverse = sum(float(np.sum(g * v[p])) for p, g in zip(wrt, grads))
    return forward, reverse


def assert_adjoint_passes_the_dot_product_test(kernel, args, wrt, outputs, rng):
    """The adjoint of ``kernel`` against the complex step, in random directions that move the
    outputs (``<w, J v>`` not near zero)."""
    f = adsrc.differentiate(kernel, wrt=wrt, outputs=outputs)
    forward, reverse = dot_product_test(f, kernel, args, wrt, outputs, rng)
    assert reverse == pytest.approx(forward, rel=1e-12)
    assert abs(forward) > 1e-3


def assert_tangent_is_the_complex_step(kernel, args, wrt, outputs, rng):
    """The tangent of ``kernel``'s outputs against the complex step, in a random direction."""
    params = parameters(kernel)
    direction = {p: rng.standard_normal(np.shape(args[params.index(p)])) for p in wrt}
    want = jvp(kernel, args, wrt, outputs, direction)
    copies = [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]
    got = adsrc.differentiate(kernel, wrt=wrt, outputs=outputs).tangent(
        *copies, **{p + "_dot": np.copy(v) for p, v in direction.items()})
    for output, tangent in zip(outputs, got):
        np.testing.assert_allclose(tangent, want[output], rtol=1e-12, atol=1e-12)
