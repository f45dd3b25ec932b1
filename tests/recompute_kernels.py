"""Kernels whose loop locals are recomputed from *frozen* values: values a loop never writes
but an enclosing loop, or a later statement, overwrites (see adsrc.analyses.recompute).

Only +, -, * and / so that a complex-step derivative of the plain Python kernel is exact.
"""

import numpy as np


def rescaled_rows(x, y, w, iters):
    """The row loop recomputes ``t`` from the scalar ``s`` and from ``x``; the outer loop
    rewrites ``s`` every iteration and ``x`` after the row loop."""
    n = x.shape[0]
    for it in range(iters):
        s = w * x[0]
        for i in range(n):
            t = s * x[i]
            y[i] = y[i] + t * t
        for i in range(n):
            x[i] = 0.5 * x[i] + 0.1 * y[i] * y[i]


def overwritten_after(x, y, c):
    """Top level: the first loop recomputes ``t`` from ``x``, which the second loop
    overwrites afterwards."""
    n = x.shape[0]
    for i in range(n):
        t = x[i] * c
        y[i] = t * t * x[i]
    for i in range(n):
        x[i] = y[i] / (1.0 + x[i] * x[i])


def previous_iterate(x, b, omega, iters):
    """A Jacobi-like sweep on a three-point stencil: the row value is recomputed from the
    copy ``xold`` that each outer iteration refreshes."""
    n = x.shape[0]
    xold = np.zeros_like(x)
    for it in range(iters):
        xold[:] = x
        for i in range(1, n - 1):
            acc = b[i] + xold[i - 1] * xold[i + 1]
            x[i] = (1.0 - omega) * xold[i] + omega * acc * acc / (2.0 + xold[i] * xold[i])


def needed_later_only(x, y, z, c):
    """The adjoint of the row loop reads no x (c is constant), but recomputing ``t`` does;
    x[0] is overwritten afterwards, so it must be saved for the recomputation alone."""
    n = x.shape[0]
    for i in range(n):
        t = x[i] * c
        y[i] = t * t
    x[0] = 2.0 * z[0]
    z[1] = x[0] * x[1]
