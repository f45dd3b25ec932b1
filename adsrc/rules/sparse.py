"""Sparse CSR products and solves over the arrays ``(data, indices, indptr)``, with their rules.

Kernels hold a CSR matrix as its three arrays, so that the matrix values are an ordinary float
array that can be active.  These functions (public as :mod:`adsrc.sparse`) build the SciPy
matrix inside, and their rules give the adjoint of ``data`` on the sparsity pattern only, one
value per stored entry: no dense matrix is ever formed.

``spsolve``, ``cg`` and ``gmres`` are differentiated implicitly (the derivative of the exact solution): the forward
part factorises once with SuperLU (``splu``) and the backward part reuses the factorisation for
one transposed solve ``A^T lam = u_bar``; then ``b_bar = lam`` and, for the stored entry
``(i, j)``, ``data_bar = -lam[i] * u[j]``.  The Krylov solvers do the transposed solve with the
same method and tolerance (see below).
"""

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from adsrc.errors import AdsrcError
from adsrc.rules.library import rule


def matvec(data, indices, indptr, x):
    """``A @ x`` for the CSR matrix ``A = (data, indices, indptr)`` with ``len(x)`` columns."""
    return _matrix(data, indices, indptr, len(x)) @ x


def rmatvec(data, indices, indptr, x, columns):
    """``A.T @ x`` for the CSR matrix ``A = (data, indices, indptr)`` with ``columns``
    columns (``len(x)`` rows)."""
    return _matrix(data, indices, indptr, columns).T @ x


def spsolve(data, indices, indptr, b):
    """The solution ``u`` of ``A u = b`` for the square CSR matrix ``A = (data, indices,
    indptr)``, by a sparse LU factorisation."""
    return _factorised(data, indices, indptr).solve(np.asarray(b, dtype=float))


def cg(data, indices, indptr, b, rtol):
    """The solution of ``A u = b`` for a symmetric positive definite CSR matrix, by conjugate
    gradients (SciPy's) to the relative residual ``rtol``."""
    return _krylov(scipy.sparse.linalg.cg, _square(data, indices, indptr), b, rtol, "cg")


def gmres(data, indices, indptr, b, rtol):
    """The solution of ``A u = b`` for a square CSR matrix, by restarted GMRES (SciPy's) to the
    relative residual ``rtol``."""
    return _krylov(scipy.sparse.linalg.gmres, _square(data, indices, indptr), b, rtol, "gmres")


def _krylov(method, matrix, b, rtol, label):
    b = np.asarray(b, dtype=float)
    u, info = method(matrix, b, rtol=rtol, atol=0.0, maxiter=20 * len(b))
    if info != 0:
        raise AdsrcError(f"{label} did not reach the relative residual {rtol} "
                         f"(SciPy's info = {info})")
    return u


def spsolve_transposed(data, indices, indptr, b):
    """The solution ``u`` of ``A^T u = b`` for the square CSR matrix ``A = (data, indices,
    indptr)``: also ``A u = b`` for the CSC matrix with these arrays."""
    return _factorised(data, indices, indptr).solve(np.asarray(b, dtype=float), trans="T")


def _square(data, indices, indptr):
    return _matrix(data, indices, indptr, len(indptr) - 1)


def _matrix(data, indices, indptr, columns):
    rows = len(indptr) - 1
    return scipy.sparse.csr_matrix((data, indices, indptr), shape=(rows, columns))


def _factorised(data, indices, indptr):
    matrix = _square(data, indices, indptr).tocsc()
    try:
        return scipy.sparse.linalg.splu(matrix)
    except RuntimeError as error:          # SuperLU: "Factor is exactly singular"
        raise AdsrcError(f"spsolve: the matrix is singular ({error})") from None


def _row_of_entry(indptr):
    """The row of every stored entry of a CSR matrix."""
    return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))


@rule(matvec, returns="float64[:]")
def _matvec_forward(data, indices, indptr, x):
    return matvec(data, indices, indptr, x), (data, indices, indptr, x)


@_matvec_forward.backward
def _matvec_backward(saved, y_bar):
    data, indices, indptr, x = saved
    data_bar = y_bar[_row_of_entry(indptr)] * x[indices]
    return data_bar, None, None, rmatvec(data, indices, indptr, y_bar, len(x))


@_matvec_forward.tangent
def _matvec_tangent(data, indices, indptr, x, data_dot, indices_dot, indptr_dot, x_dot):
    return (matvec(data, indices, indptr, x),
            matvec(data_dot, indices, indptr, x) + matvec(data, indices, indptr, x_dot))


@_matvec_forward.backward_tangent
def _matvec_backward_tangent(args, dots, y_bar, y_bar_dot):
    (data, indices, indptr, x), (data_dot, _, _, x_dot) = args, dots
    rows = _row_of_entry(indptr)
    columns = len(x)
    adjoints = (y_bar[rows] * x[indices], None, None, rmatvec(data, indices, indptr, y_bar,
                                                               columns))
    tangents = (y_bar_dot[rows] * x[indices] + y_bar[rows] * x_dot[indices], None, None,
                rmatvec(data_dot, indices, indptr, y_bar, columns)
                + rmatvec(data, indices, indptr, y_bar_dot, columns))
    return adjoints, tangents


@rule(rmatvec, returns="float64[:]")
def _rmatvec_forward(data, indices, indptr, x, columns):
    return rmatvec(data, indices, indptr, x, columns), (data, indices, indptr, x)


@_rmatvec_forward.backward
def _rmatvec_backward(saved, y_bar):
    data, indices, indptr, x = saved
    data_bar = x[_row_of_entry(indptr)] * y_bar[indices]
    return data_bar, None, None, matvec(data, indices, indptr, y_bar), None


@_rmatvec_forward.tangent
def _rmatvec_tangent(data, indices, indptr, x, columns, data_dot, indices_dot, indptr_dot,
                     x_dot, columns_dot):
    return (rmatvec(data, indices, indptr, x, columns),
            rmatvec(data_dot, indices, indptr, x, columns)
            + rmatvec(data, indices, indptr, x_dot, columns))


@_rmatvec_forward.backward_tangent
def _rmatvec_backward_tangent(args, dots, y_bar, y_bar_dot):
    (data, indices, indptr, x, _), (data_dot, _, _, x_dot, _) = args, dots
    rows = _row_of_entry(indptr)
    adjoints = (x[rows] * y_bar[indices], None, None, matvec(data, indices, indptr, y_bar),
                None)
    tangents = (x_dot[rows] * y_bar[indices] + x[rows] * y_bar_dot[indices], None, None,
                matvec(data_dot, indices, indptr, y_bar) + matvec(data, indices, indptr,
                                                                  y_bar_dot), None)
    return adjoints, tangents


def _direct_solve_rule(solver, transposed):
    """The rule of ``spsolve`` (``A u = b``) or, ``transposed``, of ``spsolve_transposed``
    (``A^T u = b``): one LU factorisation of A, used for the solve, its adjoint (the other
    orientation) and the tangents.  The adjoint of A is ``-lam u^T`` for ``A u = b`` and its
    transpose ``-u lam^T`` for ``A^T u = b``, on the stored entries only."""
    forward_trans, adjoint_trans = ("T", "N") if transposed else ("N", "T")

    def product(values, indices, indptr, x, size, trans):
        """``A x`` (trans "N") or ``A^T x`` (trans "T") for the CSR values ``values``."""
        if trans == "N":
            return matvec(values, indices, indptr, x)
        return rmatvec(values, indices, indptr, x, size)

    def entries(left, right, indices, indptr):
        """``-(left right^T)`` of A's orientation, on A's stored entries."""
        rows = _row_of_entry(indptr)
        if transposed:
            return -right[rows] * left[indices]
        return -left[rows] * right[indices]

    def solved(data, indices, indptr, b):
        factors = _factorised(data, indices, indptr)
        return factors, factors.solve(np.asarray(b, dtype=float), trans=forward_trans)

    @rule(solver, returns="float64[:]")
    def forward(data, indices, indptr, b):
        factors, u = solved(data, indices, indptr, b)
        return u, (factors, u, indices, indptr)

    @forward.backward
    def backward(saved, u_bar):
        factors, u, indices, indptr = saved
        lam = factors.solve(u_bar, trans=adjoint_trans)
        if not np.all(np.isfinite(lam)):
            raise AdsrcError(f"{solver.__name__}: the solve of the adjoint failed")
        return entries(lam, u, indices, indptr), None, None, lam

    @forward.backward_tangent
    def backward_tangent(args, dots, u_bar, u_bar_dot):
        (data, indices, indptr, b), (data_dot, _, _, b_dot) = args, dots
        factors, u = solved(data, indices, indptr, b)
        n = len(u)
        u_dot = factors.solve(b_dot - product(data_dot, indices, indptr, u, n, forward_trans),
                              trans=forward_trans)
        lam = factors.solve(u_bar, trans=adjoint_trans)
        lam_dot = factors.solve(u_bar_dot - product(data_dot, indices, indptr, lam, n,
                                                    adjoint_trans), trans=adjoint_trans)
        return ((entries(lam, u, indices, indptr), None, None, lam),
                (entries(lam_dot, u, indices, indptr) + entries(lam, u_dot, indices, indptr),
                 None, None, lam_dot))

    @forward.tangent
    def tangent(data, indices, indptr, b, data_dot, indices_dot, indptr_dot, b_dot):
        factors, u = solved(data, indices, indptr, b)
        rhs = b_dot - product(data_dot, indices, indptr, u, len(u), forward_trans)
        return u, factors.solve(rhs, trans=forward_trans)

    return forward


_direct_solve_rule(spsolve, transposed=False)
_direct_solve_rule(spsolve_transposed, transposed=True)


# Krylov solves: implicit adjoints at the computed solution.  The backward part solves the
# transposed system with the same method and tolerance (A itself for cg, which needs A
# symmetric), so the gradient is that of the exact solution A^-1 b, accurate to about the
# tolerance: it is not the derivative of the iterate SciPy returned.  For that derivative,
# write the iteration in the kernel (a fixed number of steps) and let adsrc unroll it.


def _krylov_rule(solver, method, transposed):
    @rule(solver, returns="float64[:]")
    def forward(data, indices, indptr, b, rtol):
        u = solver(data, indices, indptr, b, rtol)
        return u, (data, indices, indptr, u, rtol)

    @forward.backward
    def backward(saved, u_bar):
        data, indices, indptr, u, rtol = saved
        matrix = _square(data, indices, indptr)
        lam = _krylov(method, matrix.T if transposed else matrix, u_bar, rtol,
                      f"the adjoint solve of {solver.__name__}")
        return -lam[_row_of_entry(indptr)] * u[indices], None, None, lam, None

    @forward.tangent
    def tangent(data, indices, indptr, b, rtol, data_dot, indices_dot, indptr_dot, b_dot,
                rtol_dot):
        u = solver(data, indices, indptr, b, rtol)
        rhs = b_dot - matvec(data_dot, indices, indptr, u)
        return u, solver(data, indices, indptr, rhs, rtol)

    return forward


_krylov_rule(cg, scipy.sparse.linalg.cg, transposed=False)
_krylov_rule(gmres, scipy.sparse.linalg.gmres, transposed=True)
