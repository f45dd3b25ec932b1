"""Solver kernels for the adsrc test corpus.

Every function here is written in the language subset of docs/API.md only:
positional arguments, plain ``for ... in range(...)`` / ``while`` loops,
element reads and writes, scalar temporaries, whole-array element-wise
statements, the listed math/NumPy functions, local arrays allocated once
outside loops, calls to other module-level kernels, and ``return`` of a
scalar as the last statement.  The kernels mutate their arrays in place
and/or return a scalar.

CSR matrices are passed as ``(indptr, indices, data)`` with int32 or int64
index arrays, sorted column indices and an explicit diagonal entry.

adsrc reads this file with ``inspect``: keep it a real module, no decorators.
"""

import math

import numpy as np

from adsrc.kernels.solvers import (  # noqa: F401  (the shipped solver kernels)
    jacobi_damped,
    jacobi_csr,
    gauss_seidel,
    gauss_seidel_backward,
    gauss_seidel_symmetric,
    sor,
    spmv,
    spmv_transpose,
    lower_solve,
    upper_solve,
)

# ---------------------------------------------------------------------------
# Dense stencils
# ---------------------------------------------------------------------------


def jacobi2d(u, f, omega, iters):
    """Weighted Jacobi for the 5-point Laplacian (h = 1) on a 2-D grid,
    boundary values of u kept fixed; explicit neighbour loops:
    u[i, j] <- (1 - omega) u[i, j] + omega/4 (f[i, j] + sum of 4 neighbours)."""
    m = u.shape[0]
    p = u.shape[1]
    old = np.copy(u)
    for it in range(iters):
        for i in range(m):
            for j in range(p):
                old[i, j] = u[i, j]
        for i in range(1, m - 1):
            for j in range(1, p - 1):
                nb = old[i - 1, j] + old[i + 1, j] + old[i, j - 1] + old[i, j + 1]
                u[i, j] = (1.0 - omega) * old[i, j] + omega * 0.25 * (f[i, j] + nb)


def jacobi2d_slices(u, f, omega, iters):
    """Same iteration as ``jacobi2d``, written with slice statements."""
    old = np.copy(u)
    for it in range(iters):
        old[:, :] = u
        u[1:-1, 1:-1] = (1.0 - omega) * old[1:-1, 1:-1] + omega * 0.25 * (
            f[1:-1, 1:-1] + old[:-2, 1:-1] + old[2:, 1:-1] + old[1:-1, :-2] + old[1:-1, 2:]
        )


def smooth1d(v, theta, iters):
    """1-D three-point smoother on the interior, ends fixed:
    v[1:-1] <- (1 - theta) v[1:-1] + theta/2 (v[:-2] + v[2:])."""
    w = np.copy(v)
    for it in range(iters):
        w[:] = v
        v[1:-1] = (1.0 - theta) * w[1:-1] + 0.5 * theta * (w[:-2] + w[2:])


# ---------------------------------------------------------------------------
# Scalar iteration, branches, reductions
# ---------------------------------------------------------------------------


def newton_cubic(a, c, x0, tol, maxit):
    """Newton's method for x**3 + a*x - c = 0 from x0; stops when the step
    is below tol (or after maxit steps); returns x."""
    x = x0
    dx = 2.0 * tol + 1.0
    it = 0
    while abs(dx) > tol:
        fx = x**3 + a * x - c
        dfx = 3.0 * x * x + a
        dx = fx / dfx
        x = x - dx
        it += 1
        if it >= maxit:
            break
    return x


def branchy(x, y, a):
    """Piecewise element-wise map y = g(x; a) with data-dependent branches
    (math and NumPy functions); returns sum(y**2)."""
    n = len(x)
    s = 0.0
    for i in range(n):
        xi = x[i]
        if xi > 0.5:
            y[i] = math.sqrt(xi) * math.exp(-a * xi) + math.log(1.0 + xi)
        elif xi > -0.5:
            y[i] = np.sin(a * xi) * math.cos(xi) + math.tanh(xi)
        else:
            y[i] = abs(xi) ** 1.5 + np.minimum(xi, -a) * np.maximum(xi * xi, a)
        s += y[i] * y[i]
    return s


def residual_loss(indptr, indices, data, x, b, lam):
    """Regularised least-squares loss 0.5*||A x - b||^2 + lam*sum(x*x),
    with r = A x - b in a local array."""
    n = len(b)
    r = np.zeros(n)
    for i in range(n):
        acc = -b[i]
        for k in range(indptr[i], indptr[i + 1]):
            acc += data[k] * x[indices[k]]
        r[i] = acc
    return 0.5 * np.dot(r, r) + lam * np.sum(x * x)


# ---------------------------------------------------------------------------
# A recursive multigrid V-cycle (1-D model operator)
# ---------------------------------------------------------------------------
# Model operator on every level: (A x)_i = 2.5 x_i - x_{i-1} - x_{i+1},
# with zero values outside 0..n-1.


def mg_smooth(x, b, w):
    """One damped-Jacobi sweep for the 1-D model operator:
    x <- x + w/2.5 (b - A x)."""
    n = len(x)
    old = np.copy(x)
    for i in range(n):
        acc = b[i] - 2.5 * old[i]
        if i > 0:
            acc += old[i - 1]
        if i < n - 1:
            acc += old[i + 1]
        x[i] = old[i] + w * acc / 2.5


def mg_residual(x, b, r):
    """r = b - A x for the 1-D model operator (r overwritten)."""
    n = len(x)
    for i in range(n):
        acc = b[i] - 2.5 * x[i]
        if i > 0:
            acc += x[i - 1]
        if i < n - 1:
            acc += x[i + 1]
        r[i] = acc


def vcycle(level, nlevels, x, b, w):
    """One multigrid V-cycle for A x = b (len(x) = 2**(nlevels - 1 - level)):
    pre-smooth, restrict the residual by averaging pairs, recurse on the
    coarse correction, prolong by injection into both points, post-smooth.
    The coarsest level (one point) is solved directly: x = b / 2.5."""
    n = len(x)
    nc = n // 2
    r = np.zeros(n)
    rc = np.zeros(nc)
    ec = np.zeros(nc)
    if level == nlevels - 1:
        x[0] = b[0] / 2.5
    else:
        mg_smooth(x, b, w)
        mg_residual(x, b, r)
        for i in range(nc):
            rc[i] = 0.5 * (r[2 * i] + r[2 * i + 1])
        vcycle(level + 1, nlevels, ec, rc, w)
        for i in range(nc):
            x[2 * i] += ec[i]
            x[2 * i + 1] += ec[i]
        mg_smooth(x, b, w)
