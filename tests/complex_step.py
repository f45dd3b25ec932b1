"""Directional derivatives of plain Python kernels by the complex step, a method independent of
adsrc: run the kernel on ``args + i*h*v`` and read the imaginary parts of its outputs.  Exact to
rounding for kernels made of +, -, *, / and analytic functions (no abs, min, max).

Every float array runs as a complex copy, so that an output not differentiated with respect to
carries its imaginary part too; and a complex value stored into a float array (one the kernel
allocates itself) raises instead of dropping the imaginary part, which would give a wrong
reference without a sign."""

import warnings

import numpy as np

STEP = 1e-30


def parameters(kernel):
    return list(kernel.__code__.co_varnames[:kernel.__code__.co_argcount])


def jvp(kernel, args, wrt, outputs, direction):
    """``{output: J v}`` for the directions ``direction[name]`` of the ``wrt`` arguments."""
    params = parameters(kernel)
    shifted = []
    for param, arg in zip(params, args):
        if param in wrt:
            arg = np.asarray(arg, dtype=complex) + 1j * STEP * direction[param]
            arg = complex(arg) if np.ndim(arg) == 0 else arg
        elif isinstance(arg, np.ndarray):
            arg = arg.astype(complex) if arg.dtype.kind == "f" else arg.copy()
        shifted.append(arg)
    with warnings.catch_warnings():
        warnings.simplefilter("error", np.exceptions.ComplexWarning)
        kernel(*shifted)
    return {out: np.imag(shifted[params.index(out)]) / STEP for out in outputs}


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
