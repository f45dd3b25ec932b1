"""Derivative rules for NumPy's dense linear algebra: ``np.linalg.solve``, ``np.linalg.norm`` and
``np.linalg.qr``.

``x = solve(A, b)`` is differentiated implicitly: the forward part keeps the LU factors, and the
backward part solves one transposed system with them (``A^T lam = x_bar``), then
``A_bar = -lam x^T`` and ``b_bar = lam``.  Its tangent is ``A x_dot = b_dot - A_dot x`` with the
same factors.
"""

import warnings

import numpy as np

from adsrc.errors import AdsrcError
from adsrc.rules.library import rule, split


def _linalg():
    """``scipy.linalg``, imported by the first rule that runs, not with adsrc, whose import it
    would more than double (benchmarks/OVERHEAD.md)."""
    import scipy.linalg
    return scipy.linalg


def _lu_factors(A, b):
    """The LU factors of ``A`` for ``np.linalg.solve(A, b)``, with NumPy's errors: for a
    matrix that is not square (SciPy factors it, and the error was 'Singular matrix'), a ``b``
    of another length (SciPy's 'Shapes of lu (5, 5) and b (6,) are incompatible'), and an
    exactly singular ``A`` (SciPy's ``lu_factor`` only warns, and the solves would give
    NaN)."""
    if A.shape[0] != A.shape[1]:
        raise np.linalg.LinAlgError(f"np.linalg.solve: the matrix must be square, got "
                                    f"{A.shape[0]} x {A.shape[1]}")
    if b.shape[0] != A.shape[0]:
        raise ValueError(f"np.linalg.solve: the right-hand side has {b.shape[0]} entries, but "
                         f"the matrix is {A.shape[0]} x {A.shape[1]}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _linalg().LinAlgWarning)
        factors = _linalg().lu_factor(A, check_finite=False)
    if np.any(np.diagonal(factors[0]) == 0.0):
        raise np.linalg.LinAlgError("Singular matrix")
    return factors


def _lu_solve(factors, rhs, trans=0):
    """SciPy's ``lu_solve`` without its check of finite values: a NaN or an infinity in ``A`` or
    the right-hand side gives NaN, as ``np.linalg.solve`` gives, where the check raised
    ValueError for a kernel NumPy runs."""
    return _linalg().lu_solve(factors, rhs, trans=trans, check_finite=False)


@rule(np.linalg.solve, returns="float64[:]", shape=("A.shape[0]",),
      takes=("float64[:,:]", "float64[:]"))
def solve_forward(A, b):
    factors = _lu_factors(A, b)
    x = _lu_solve(factors, b)
    return x, (factors, x)


@solve_forward.backward
def _solve_backward(saved, x_bar):
    factors, x = saved
    lam = _lu_solve(factors, x_bar, trans=1)
    return -np.outer(lam, x), lam


@solve_forward.tangent
def _solve_tangent(A, b, A_dot, b_dot):
    factors = _lu_factors(A, b)
    x = _lu_solve(factors, b)
    return x, _lu_solve(factors, b_dot - A_dot @ x)


@solve_forward.backward_tangent
def _solve_backward_tangent(args, dots, x_bar, x_bar_dot):
    (A, b), (A_dot, b_dot) = args, dots
    factors = _lu_factors(A, b)
    x = _lu_solve(factors, b)
    x_dot = _lu_solve(factors, b_dot - A_dot @ x)
    lam = _lu_solve(factors, x_bar, trans=1)
    lam_dot = _lu_solve(factors, x_bar_dot - A_dot.T @ lam, trans=1)
    return (-np.outer(lam, x), lam), (-np.outer(lam_dot, x) - np.outer(lam, x_dot), lam_dot)


@rule(np.linalg.norm, returns="float", takes=("float64[:]",))
def norm_forward(x):
    value = _norm_of_vector(x)
    return value, (x, value)


@norm_forward.backward
def _norm_backward(saved, value_bar):
    x, value = saved
    return (value_bar / value) * x,


@norm_forward.tangent
def _norm_tangent(x, x_dot):
    value = _norm_of_vector(x)
    return value, float(np.dot(x, x_dot)) / value


@norm_forward.backward_tangent
def _norm_backward_tangent(args, dots, value_bar, value_bar_dot):
    (x,), (x_dot,) = args, dots
    value = _norm_of_vector(x)
    value_dot = float(np.dot(x, x_dot)) / value
    x_bar = (value_bar / value) * x
    x_bar_dot = (value_bar_dot / value) * x \
        + value_bar * (x_dot / value - x * (value_dot / value ** 2))
    return (x_bar,), (x_bar_dot,)


def _norm_of_vector(x):
    """The 2-norm of a vector; it has no derivative at zero, so adsrc refuses rather than
    return NaN or an arbitrary subgradient."""
    if np.ndim(x) != 1:
        raise AdsrcError("np.linalg.norm: adsrc differentiates the 2-norm of a vector (1-D) "
                         f"only, got {np.ndim(x)} dimensions")
    value = float(np.linalg.norm(x))
    if value == 0.0:
        raise AdsrcError("np.linalg.norm has no derivative at the zero vector")
    return value


# QR ------------------------------------------------------------------------------------------------
#
# ``Q, R = np.linalg.qr(A)`` (reduced, A square or tall) is split by the fence into one rule per
# factor, each written into a new local array.  With Q_bar and R_bar the adjoints of both factors,
#     M = R R_bar^T - Q_bar^T Q,   A_bar = (Q_bar + Q copyltu(M)) R^-T,
# where copyltu(M) copies M's lower triangle to the upper one; each factor's rule applies it with
# the other factor's adjoint zero, and the two contributions add up.  The tangent, with
# X = Q^T A_dot R^-1 and its skew part W = tril(X, -1) - tril(X, -1)^T, is
#     R_dot = (X - W) R,   Q_dot = A_dot R^-1 - Q (X - W).
# Hessian-vector products differentiate the backward part once more (``_qr_backward_tangent``),
# along Q_dot, R_dot from the tangent and along the tangents of the incoming adjoints.


def qr_q(A):
    """Q of the reduced QR factorisation of a square or tall matrix."""
    return _qr(A)[0]


def qr_r(A):
    """R of the reduced QR factorisation of a square or tall matrix."""
    return _qr(A)[1]


def _qr(A):
    rows, columns = np.shape(A)
    if rows < columns:
        raise AdsrcError(f"np.linalg.qr: adsrc differentiates the QR factorisation of square "
                         f"and tall matrices, got {rows} x {columns}")
    Q, R = np.linalg.qr(A)
    if np.any(np.diag(R) == 0.0):
        raise AdsrcError("np.linalg.qr: the matrix does not have full column rank, its QR "
                         "factorisation has no derivative")
    return Q, R


def _qr_backward(Q, R, Q_bar, R_bar):
    """A_bar = (Q_bar + Q copyltu(M)) R^-T."""
    return _times_inverse_transpose(Q_bar + Q @ _qr_copied(Q, R, Q_bar, R_bar), R)


def _qr_backward_tangent(Q, R, Q_dot, R_dot, Q_bar, R_bar, Q_bar_dot, R_bar_dot):
    """``(A_bar, A_bar_dot)``: :func:`_qr_backward` and its tangent when the factors move along
    Q_dot, R_dot and the adjoints along Q_bar_dot, R_bar_dot.  With B = Q_bar + Q C and
    C = copyltu(M), A_bar = B R^-T, so A_bar_dot = (B_dot - A_bar R_dot^T) R^-T (the tangent
    of R^-T is -R^-T R_dot^T R^-T), where B_dot = Q_bar_dot + Q_dot C + Q C_dot; M is bilinear
    in the factors and their adjoints, and copyltu linear, so C_dot is the sum of C with the
    factors replaced by their tangents and C with the adjoints replaced by theirs."""
    copied = _qr_copied(Q, R, Q_bar, R_bar)
    copied_dot = _qr_copied(Q_dot, R_dot, Q_bar, R_bar) \
        + _qr_copied(Q, R, Q_bar_dot, R_bar_dot)
    A_bar = _qr_backward(Q, R, Q_bar, R_bar)
    B_dot = Q_bar_dot + Q_dot @ copied + Q @ copied_dot
    return A_bar, _times_inverse_transpose(B_dot - A_bar @ R_dot.T, R)


def _qr_copied(Q, R, Q_bar, R_bar):
    """copyltu(M), M = R R_bar^T - Q_bar^T Q: M's lower triangle, mirrored to the upper one."""
    M = R @ R_bar.T - Q_bar.T @ Q
    return np.tril(M) + np.tril(M, -1).T


def _times_inverse_transpose(B, R):
    """B R^-T, by one triangular solve with the upper triangular R."""
    return _linalg().solve_triangular(R, B.T, lower=False, check_finite=False).T


def _qr_tangent(A, A_dot):
    Q, R = _qr(A)
    A_dot_R_inv = _linalg().solve_triangular(R, A_dot.T, trans=1, lower=False,
                                             check_finite=False).T
    X = Q.T @ A_dot_R_inv
    lower = np.tril(X, -1)
    upper_part = X - (lower - lower.T)
    return Q, R, A_dot_R_inv - Q @ upper_part, upper_part @ R


def _qr_factor_rule(factor, index, shape):
    """The rule of one factor of the QR factorisation (index 0: Q, 1: R) of the shape
    ``shape``."""
    @rule(factor, returns="float64[:,:]", shape=shape, takes=("float64[:,:]",))
    def forward(A):
        Q, R = _qr(A)
        return (Q, R)[index], (Q, R)

    def both(Q, R, factor_bar):
        """The adjoints of (Q, R): this factor's, and zero for the other factor."""
        bars = [np.zeros_like(Q), np.zeros_like(R)]
        bars[index] = factor_bar
        return bars

    @forward.backward
    def backward(saved, factor_bar):
        Q, R = saved
        return _qr_backward(Q, R, *both(Q, R, factor_bar)),

    @forward.tangent
    def tangent(A, A_dot):
        Q, R, Q_dot, R_dot = _qr_tangent(A, A_dot)
        return (Q, R)[index], (Q_dot, R_dot)[index]

    @forward.backward_tangent
    def backward_tangent(args, dots, factor_bar, factor_bar_dot):
        (A,), (A_dot,) = args, dots
        Q, R, Q_dot, R_dot = _qr_tangent(A, A_dot)
        A_bar, A_bar_dot = _qr_backward_tangent(Q, R, Q_dot, R_dot, *both(Q, R, factor_bar),
                                                *both(Q, R, factor_bar_dot))
        return (A_bar,), (A_bar_dot,)

    return forward


_qr_factor_rule(qr_q, 0, ("A.shape[0]", "min(A.shape[0], A.shape[1])"))
_qr_factor_rule(qr_r, 1, ("min(A.shape[0], A.shape[1])", "A.shape[1]"))
split(np.linalg.qr, [qr_q, qr_r])
