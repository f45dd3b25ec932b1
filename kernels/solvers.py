"""Solver kernels shipped with adsrc: smoothers and sparse triangular solves over CSR arrays.

Plain Python, in the subset adsrc differentiates (see the README).  A CSR matrix is passed as
``(indptr, indices, data)`` with int32 or int64 index arrays, sorted column indices and an
explicit diagonal entry.  Every kernel updates its arrays in place.

adsrc reads this file with ``inspect``: no decorators here.
"""

import numpy as np


# ---------------------------------------------------------------------------
# Jacobi
# ---------------------------------------------------------------------------


def jacobi_damped(indptr, indices, data, dinv, x, b, alpha, iters):
    """Damped Jacobi: ``iters`` times  x <- x + alpha * dinv * (b - A x).

    A is the CSR matrix, ``dinv`` a given inverse diagonal; the residual goes
    into a local array ``r`` and x is updated by a whole-array statement."""
    n = len(b)
    r = np.zeros(n)
    for it in range(iters):
        for i in range(n):
            acc = b[i]
            for k in range(indptr[i], indptr[i + 1]):
                acc -= data[k] * x[indices[k]]
            r[i] = acc
        x += alpha * dinv * r


def jacobi_csr(indptr, indices, data, x, b, omega, iters):
    """Weighted Jacobi, diagonal taken from the row:
    ``iters`` times  x <- (1 - omega) x + omega D^-1 (b - (A - D) x),
    reading the previous iterate from a local copy ``xold``."""
    n = len(b)
    xold = np.zeros(n)
    for it in range(iters):
        xold[:] = x
        for i in range(n):
            acc = b[i]
            diag = 0.0
            for k in range(indptr[i], indptr[i + 1]):
                j = indices[k]
                if j == i:
                    diag = data[k]
                else:
                    acc -= data[k] * xold[j]
            x[i] = (1.0 - omega) * xold[i] + omega * acc / diag


# ---------------------------------------------------------------------------
# Gauss-Seidel and SOR
# ---------------------------------------------------------------------------


def gauss_seidel(indptr, indices, data, x, b, sweeps):
    """Forward Gauss-Seidel, ``sweeps`` sweeps over rows 0..n-1, in place:
    x[i] = (b[i] - sum_{j != i} a_ij x[j]) / a_ii with the newest x."""
    n = len(b)
    for s in range(sweeps):
        for i in range(n):
            acc = b[i]
            diag = 0.0
            for k in range(indptr[i], indptr[i + 1]):
                j = indices[k]
                if j == i:
                    diag = data[k]
                else:
                    acc -= data[k] * x[j]
            x[i] = acc / diag


def gauss_seidel_backward(indptr, indices, data, x, b, sweeps):
    """Backward Gauss-Seidel: like ``gauss_seidel`` but rows n-1..0."""
    n = len(b)
    for s in range(sweeps):
        for i in range(n - 1, -1, -1):
            acc = b[i]
            diag = 0.0
            for k in range(indptr[i], indptr[i + 1]):
                j = indices[k]
                if j == i:
                    diag = data[k]
                else:
                    acc -= data[k] * x[j]
            x[i] = acc / diag


def gauss_seidel_symmetric(indptr, indices, data, x, b, sweeps):
    """Symmetric Gauss-Seidel: each sweep is one forward then one backward
    sweep (calls the two kernels above)."""
    for s in range(sweeps):
        gauss_seidel(indptr, indices, data, x, b, 1)
        gauss_seidel_backward(indptr, indices, data, x, b, 1)


def sor(indptr, indices, data, x, b, omega, sweeps):
    """Forward SOR with relaxation ``omega``:
    x[i] = (1 - omega) x[i] + omega (b[i] - sum_{j != i} a_ij x[j]) / a_ii."""
    n = len(b)
    for s in range(sweeps):
        for i in range(n):
            acc = b[i]
            diag = 0.0
            for k in range(indptr[i], indptr[i + 1]):
                j = indices[k]
                if j == i:
                    diag = data[k]
                else:
                    acc -= data[k] * x[j]
            x[i] = (1.0 - omega) * x[i] + omega * acc / diag


# ---------------------------------------------------------------------------
# Sparse products and triangular solves
# ---------------------------------------------------------------------------


def spmv(indptr, indices, data, x, y):
    """CSR matrix-vector product y = A x (y overwritten)."""
    n = len(y)
    for i in range(n):
        acc = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            acc += data[k] * x[indices[k]]
        y[i] = acc


def spmv_transpose(indptr, indices, data, x, y):
    """Transposed CSR product y = A^T x (y overwritten), by scattering."""
    for j in range(len(y)):
        y[j] = 0.0
    for i in range(len(x)):
        xi = x[i]
        for k in range(indptr[i], indptr[i + 1]):
            y[indices[k]] += data[k] * xi


def lower_solve(indptr, indices, data, x):
    """Forward substitution in place: x <- L^-1 x for the lower-triangular
    part (diagonal included) of the CSR matrix; entries above the diagonal
    are ignored."""
    n = len(x)
    for i in range(n):
        acc = x[i]
        diag = 1.0
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            if j < i:
                acc -= data[k] * x[j]
            elif j == i:
                diag = data[k]
        x[i] = acc / diag


def upper_solve(indptr, indices, data, x):
    """Back substitution in place: x <- U^-1 x for the upper-triangular part
    (diagonal included) of the CSR matrix; entries below the diagonal are
    ignored."""
    n = len(x)
    for i in range(n - 1, -1, -1):
        acc = x[i]
        diag = 1.0
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            if j > i:
                acc -= data[k] * x[j]
            elif j == i:
                diag = data[k]
        x[i] = acc / diag
