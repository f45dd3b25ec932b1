"""Kernels that call library functions with derivative rules (tests/test_rules.py), and a user
rule declared with ``adsrc.rule``."""

import collections
import math
import types

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
from scipy.sparse.linalg import factorized, splu

import adsrc
from adsrc.sparse import cg, gmres, matvec, rmatvec, spsolve

#: what the spying rule's forward part saved, call by call (see ``scaled_cumsum``)
SAVED = []


def scaled_cumsum(x, alpha):
    """A 'library' function: vectorised NumPy that adsrc does not look inside."""
    return alpha * np.cumsum(x)


@adsrc.rule(scaled_cumsum, returns="float64[:]", shape=("x.shape[0]",))
def scaled_cumsum_forward(x, alpha):
    # saves x by reference: a kernel that overwrites x later needs adsrc to copy it
    SAVED.append(x)
    return scaled_cumsum(x, alpha), (x, alpha)


@scaled_cumsum_forward.backward
def _scaled_cumsum_backward(saved, y_bar):
    x, alpha = saved
    tail_sums = np.cumsum(y_bar[::-1])[::-1]
    return alpha * tail_sums, float(np.dot(tail_sums, x))


@scaled_cumsum_forward.tangent
def _scaled_cumsum_tangent(x, alpha, x_dot, alpha_dot):
    return scaled_cumsum(x, alpha), alpha * np.cumsum(x_dot) + alpha_dot * np.cumsum(x)


@scaled_cumsum_forward.backward_tangent
def _scaled_cumsum_backward_tangent(args, dots, y_bar, y_bar_dot):
    (x, alpha), (x_dot, alpha_dot) = args, dots
    tail, tail_dot = (np.cumsum(seed[::-1])[::-1] for seed in (y_bar, y_bar_dot))
    return ((alpha * tail, float(np.dot(tail, x))),
            (alpha_dot * tail + alpha * tail_dot,
             float(np.dot(tail_dot, x) + np.dot(tail, x_dot))))


def cumsum_energy(x, alpha, y):
    y[:] = scaled_cumsum(x, alpha)
    total = 0.0
    for i in range(len(y)):
        total += math.sin(y[i]) * x[i]
    return total * alpha


def cumsum_bound(x, alpha, y):
    """The rule's result bound to a name, and nested in expressions (allocated by its shape)."""
    t = scaled_cumsum(x * x, alpha)
    y[:] = t + scaled_cumsum(x, 0.5)
    return np.sum(scaled_cumsum(t, alpha) * x)


def cumsum_then_overwrite(x, alpha, y):
    y[:] = scaled_cumsum(x, alpha)
    for i in range(len(x)):
        x[i] = y[i] * y[i]          # x changes after the rule saved it


def cumsum_only(x, alpha, y):
    y[:] = scaled_cumsum(x, alpha)
    for i in range(len(y)):
        y[i] = math.sin(y[i])


def dense_solve_energy(A, b, x):
    x[:] = np.linalg.solve(A, b)
    return np.dot(x, x) + np.linalg.norm(b) * x[0]


def solve_in_loop(A, b, x, steps):
    for step in range(steps):
        x[:] = np.linalg.solve(A, b)        # x's old value is read by the previous reverse step
        for i in range(len(b)):
            b[i] = b[i] + 0.1 * x[i] * x[i]


def power_iteration(A, v, w, iters):
    n = len(v)
    for it in range(iters):
        for i in range(n):
            acc = 0.0
            for j in range(n):
                acc += A[i, j] * v[j]
            w[i] = acc
        size = np.linalg.norm(w)           # the rule saves w, which the next iteration writes
        for i in range(n):
            v[i] = w[i] / size
    return v[0] * size


def csr_products(data, indices, indptr, x, y, z, columns):
    y[:] = matvec(data, indices, indptr, x)
    for i in range(len(y)):
        y[i] = math.tanh(y[i])
    z[:] = rmatvec(data, indices, indptr, y, columns)


def compliance(data, indices, indptr, f, u):
    u[:] = spsolve(data, indices, indptr, f)
    return np.dot(f, u)


def cg_compliance(data, indices, indptr, f, u):
    u[:] = cg(data, indices, indptr, f, 1e-13)
    return np.dot(f, u)


def gmres_energy(data, indices, indptr, f, u):
    u[:] = gmres(data, indices, indptr, f, 1e-13)
    return np.dot(u, u)


def cg_unrolled(data, indices, indptr, f, u, steps):
    """``steps`` conjugate-gradient iterations from u = 0, written out: adsrc differentiates the
    iterate itself, where the rule of ``cg`` gives the derivative of the exact solution."""
    n = len(f)
    r = np.copy(f)
    p = np.copy(f)
    q = np.zeros(n)
    rr = np.dot(r, r)
    for step in range(steps):
        for i in range(n):
            acc = 0.0
            for k in range(indptr[i], indptr[i + 1]):
                acc += data[k] * p[indices[k]]
            q[i] = acc
        alpha = rr / np.dot(p, q)
        u += alpha * p
        r -= alpha * q
        rr_new = np.dot(r, r)
        p[:] = r + (rr_new / rr) * p
        rr = rr_new
    return np.dot(f, u)


def products_energy(data, indices, indptr, x, y, z, columns):
    csr_products(data, indices, indptr, x, y, z, columns)
    return np.dot(z, z)


def scipy_spelling(data, indices, indptr, x, f, y, u):
    """The products and the solve of csr_products and compliance, in SciPy's spelling."""
    n = len(indptr) - 1
    A = scipy.sparse.csr_matrix((data, indices, indptr), shape=(n, len(x)))
    y[:] = A @ x
    for i in range(n):
        y[i] = math.tanh(y[i])
    x[:] = A.T @ y
    u[:] = scipy.sparse.linalg.spsolve(A, f)
    return np.dot(f, u) + np.dot(x, x)


def csc_spelling(data, indices, indptr, x, f, y, u):
    """scipy_spelling with a CSC matrix: its arrays hold columns."""
    n = len(indptr) - 1
    A = scipy.sparse.csc_matrix((data, indices, indptr), shape=(n, n))
    y[:] = A @ x
    for i in range(n):
        y[i] = math.tanh(y[i])
    x[:] = A.T @ y
    u[:] = scipy.sparse.linalg.spsolve(A, f)
    return np.dot(f, u) + np.dot(x, x) + u[0] * y[1]


def coo_spelling(data, row, col, x, f, y, u, w):
    """COO triplets (a position may repeat: SciPy sums it) in products and in the three
    solves, with SciPy's two ways of taking a Krylov solution."""
    n = len(f)
    K = scipy.sparse.coo_matrix((data, (row, col)), shape=(n, n))
    y[:] = K @ x
    for i in range(n):
        y[i] = math.tanh(y[i])
    x[:] = K.T @ y
    u[:] = scipy.sparse.linalg.spsolve(K.tocsc(), f)
    v, info = scipy.sparse.linalg.gmres(K, f, rtol=1e-13)
    w[:] = scipy.sparse.linalg.cg(K, f, rtol=1e-13, atol=0.0)[0]
    return np.dot(f, u) + np.dot(x, x) + np.dot(v, y) + np.dot(w, w) * (info + 1)


def csc_krylov(data, indices, indptr, f, u, w):
    """cg and gmres of a CSC matrix (its arrays are the CSR arrays of A^T)."""
    n = len(f)
    A = scipy.sparse.csc_matrix((data, indices, indptr), shape=(n, n))
    u[:], info = scipy.sparse.linalg.cg(A, f, rtol=1e-13)
    w[:] = scipy.sparse.linalg.gmres(A, u, rtol=1e-13)[0]
    return np.dot(f, u) + np.dot(w, w)


def factorised_steps(data, indices, indptr, f, u, steps):
    """One factorisation, solved with in a loop (splu), transposed, and through factorized."""
    n = len(f)
    A = scipy.sparse.csc_matrix((data, indices, indptr), shape=(n, n))
    lu = splu(A)
    solve = factorized(A)
    for step in range(steps):
        u[:] = lu.solve(f)
        for i in range(n):
            f[i] = f[i] + 0.1 * u[i] * u[i]
    w = np.zeros(n)
    w[:] = lu.solve(f, trans="T")
    u[:] = solve(w)
    return np.dot(u, u) + np.dot(w, f)


def refactorised_steps(data, indices, indptr, f, u, steps):
    """The matrix changes before every factorisation, as in Newton's method."""
    n = len(f)
    A = scipy.sparse.csr_matrix((data, indices, indptr), shape=(n, n))
    for step in range(steps):
        for k in range(len(data)):
            data[k] = data[k] * (1.0 + 0.1 * u[indices[k]] ** 2)
        lu = splu(A.tocsc())
        u[:] = lu.solve(f)
    return np.dot(u, u)


def solves_in_a_loop(data, indices, indptr, f, u, steps):
    for step in range(steps):
        u[:] = spsolve(data, indices, indptr, f)
        for i in range(len(f)):
            f[i] = f[i] + 0.1 * u[i]
    return np.dot(u, f)


def cg_then_overwrite(data, indices, indptr, f, u):
    """The cg rule saves the matrix, which shares ``data``; the kernel then overwrites ``data``."""
    u[:] = cg(data, indices, indptr, f, 1e-13)
    for k in range(len(data)):
        data[k] = 2.0 * data[k]
    return np.dot(f, u)


def spsolve_then_overwrite(data, indices, indptr, f, u):
    """spsolve's rule saves its factorisation and solution; the kernel then overwrites ``data``
    and ``f``, and reads the solution again."""
    u[:] = spsolve(data, indices, indptr, f)
    for k in range(len(data)):
        data[k] = 2.0 * data[k]
    for i in range(len(f)):
        f[i] = f[i] * u[i]
    return np.dot(f, u)


def gmres_then_overwrite(data, indices, indptr, f, u):
    """gmres's rule saves the matrix, which shares ``data``; the kernel then overwrites it
    linearly, so the reverse sweep does not restore it (it needs no old value)."""
    u[:] = gmres(data, indices, indptr, f, 1e-13)
    for k in range(len(data)):
        data[k] = 3.0 * data[k]
    return np.dot(u, u) + np.dot(data, data)


def products_then_overwrite(data, indices, indptr, x, y, columns):
    """The product rules save ``data`` and ``x`` by reference; the kernel then overwrites both."""
    y[:] = matvec(data, indices, indptr, x)
    for k in range(len(data)):
        data[k] = data[k] * data[k]
    for j in range(columns):
        x[j] = 3.0 * x[j]
    x[:] = rmatvec(data, indices, indptr, y, columns)
    return np.dot(y, y) + np.dot(x, x)


def qr_then_overwrite(A, B):
    """QR's rule saves its factors; the kernel then overwrites A."""
    Q, R = np.linalg.qr(A)
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            A[i, j] = Q[i, j] * B[i, j]
    total = 0.0
    for i in range(R.shape[0]):
        for j in range(R.shape[1]):
            total += R[i, j] * R[i, j] * B[i, j]
    return total + np.sum(A)


# results bound to names and used in expressions (each allocated by the shape its rule declares)

def newton_dense(A, b, x, iters):
    """Newton's method for A x + 0.1 x^3 = b: the solve's right-hand side an expression, its
    result a local array bound on every step."""
    n = x.shape[0]
    J = np.zeros((n, n))
    for it in range(iters):
        for i in range(n):
            for j in range(n):
                J[i, j] = A[i, j]
            J[i, i] += 0.3 * x[i] * x[i]
        dx = np.linalg.solve(J, A @ x + 0.1 * x * x * x - b)
        x -= dx
    return np.dot(x, x)


def cg_natural(data, indices, indptr, b, x, iters):
    """Conjugate gradients as written with a SciPy matrix: products inside expressions."""
    n = len(b)
    A = scipy.sparse.csr_matrix((data, indices, indptr), shape=(n, n))
    r = b - A @ x
    p = r.copy()
    rr = np.dot(r, r)
    for k in range(iters):
        Ap = A @ p
        alpha = rr / np.dot(p, Ap)
        x += alpha * p
        r -= alpha * Ap
        rr_new = np.dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return np.dot(b, x) + np.dot(x, A.T @ x)


def solved(A, b):
    return np.linalg.solve(A, b)


def solve_returned(A, b, y):
    """A function returning a solve's result, inlined into its caller."""
    z = solved(A, b)
    y[:] = 2.0 * z
    return np.dot(z, z)


def krylov_correction(data, indices, indptr, b, x0, u):
    """cg's solution bound to a name, its right-hand side an expression."""
    n = len(b)
    A = scipy.sparse.csr_matrix((data, indices, indptr), shape=(n, n))
    d, info = scipy.sparse.linalg.cg(A, b - A @ x0, rtol=1e-13)
    u[:] = x0 + d
    return np.dot(u, u)


def solve_rebinding_an_argument(A, b, x):
    """x bound to a new array: the caller's x stays as it was, as in Python."""
    x = np.linalg.solve(A, b)
    return np.dot(x, x)


# results overwriting an argument of the call

def implicit_euler(M, u, steps):
    """u[:] = solve(M, u): the solve reads u, then its result overwrites it, step by step."""
    for step in range(steps):
        u[:] = np.linalg.solve(M, u)
    return np.sum(u * u)


def product_in_place(data, indices, indptr, u):
    n = len(u)
    A = scipy.sparse.csr_matrix((data, indices, indptr), shape=(n, n))
    u[:] = A @ u
    for i in range(n):
        u[i] = u[i] * u[i]
    u[:] = spsolve(data, indices, indptr, u)
    return np.dot(u, u)


def qr_iteration(A, steps):
    """Q, R = np.linalg.qr(A) inside a loop: the factors are allocated before it."""
    for step in range(steps):
        Q, R = np.linalg.qr(A)
        A[:, :] = R @ Q
    return np.sum(np.diag(A) * np.diag(A))


def qr_rebinding_its_argument(A, B):
    """A, R = np.linalg.qr(A): R is the factor of the A passed, as Python calls, then binds."""
    A, R = np.linalg.qr(A)
    return np.sum(A * B) + np.sum(np.sin(R))


def subspace_iteration(M, Q, steps):
    """Q, R = np.linalg.qr(Q) in a loop, then Q = M @ Q: the last R's diagonal estimates the
    magnitudes of M's leading eigenvalues."""
    R = np.zeros((Q.shape[1], Q.shape[1]))
    for step in range(steps):
        Q, R = np.linalg.qr(Q)
        Q = M @ Q
    return np.sum(np.abs(np.diag(R))) + np.sum(R * R)


def heavy_ball(A, b, x0, iters):
    """Names handed on (xp = x; x = xn), one of them bound to a solve's result."""
    x = x0 * 1.0
    xp = x0 * 1.0
    for k in range(iters):
        xn = np.linalg.solve(A, b + x - xp)
        xp = x
        x = xn
    return np.dot(x, x) + np.dot(xp, b)


# what a forward part saves: a named tuple (kept one), another object (refused if it holds an
# array the kernel overwrites later: adsrc cannot copy it)

SavedSquare = collections.namedtuple("SavedSquare", "x")


def squared(x):
    return x * x


def squared_in_a_namespace(x):
    return x * x


def _declare_squaring(function, save):
    """The rule of ``function`` (x * x) whose forward part saves ``save(x)``, an object with
    the attribute ``x``."""
    @adsrc.rule(function, returns="float64[:]", shape=("x.shape[0]",))
    def forward(x):
        return x * x, save(x)

    @forward.backward
    def _backward(saved, y_bar):
        return 2.0 * saved.x * y_bar,


_declare_squaring(squared, SavedSquare)
_declare_squaring(squared_in_a_namespace, lambda x: types.SimpleNamespace(x=x))


def squared_then_scaled(x):
    """d/dx sum(x^2 * 3x) = 9 x^2: the backward part must see x as it was at the call."""
    y = squared(x)
    x *= 3.0
    return np.sum(y * x)


def namespace_then_scaled(x):
    y = squared_in_a_namespace(x)
    x *= 3.0
    return np.sum(y * x)
