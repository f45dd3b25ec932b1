"""Kernels with dense matrix-vector products (``A @ x``, ``A.T @ x``, ``np.dot(A, x)``), for
tests/test_dense_products.py.  Arrays they allocate are ``np.zeros_like`` an argument, so that
the complex step (tests/complex_step.py) runs them on complex copies."""

import numpy as np


def residual_norm(A, x, b):
    r = b - A @ x
    return np.dot(r, r)


def residual_norm_dot(A, x, b):
    """The same, spelled with np.dot for the product and @ for the dot product."""
    r = b - np.dot(A, x)
    return r @ r


def dense_jacobi(A, dinv, x, b, iters):
    r = np.zeros_like(x)
    for it in range(iters):
        r[:] = b - A @ x
        x[:] = x + dinv * r


def transposed_product(A, x, y):
    y[:] = 2.0 * (A.T @ x) + y


def nested_products(A, B, x, y):
    y[:] = A @ (B @ x + x)


def summed_products(A, x, z):
    return np.sum(A @ x) + np.dot(z, A @ x) + np.dot(x, A.T @ z)


def vector_matrix_products(A, x, y):
    """v @ M and np.dot(v, M), which are M.T @ v; the second reads the old y."""
    y[:] = x @ A + 0.5 * np.dot(y, A)


def product_into_itself(A, x):
    """Every row of the product reads the old x, as NumPy's temporary holds it."""
    x[:] = A @ x


def product_of_an_expression(A, x, y):
    y[:] = (A + A) @ x


def product_of_floats(a, b):
    return a @ b


def transposed_vector(x, y):
    """x.T of a 1-D array is x."""
    return x.T @ y


def matrix_products(B, D, K, A, x):
    """Products of 2-D arrays: an element stiffness K += B.T @ (D @ B) (the inner product an
    expression), np.dot(A, A.T) and A.T @ K (K's old values: K is the target), the
    symmetrisation K + K.T, x @ K.T, and a scalar times a matrix times an array, which Python
    reads (0.1 * A.T) @ K."""
    K[:, :] = K + B.T @ (D @ B) * 0.5
    S = np.dot(A, A.T) - A.T @ K + 0.5 * (K + K.T)
    K[:, :] = K - 0.1 * A.T @ K
    x[:] = S @ x + x @ K.T - K / 3.0 @ x


def conjugate_gradients(A, b, x, iters):
    """CG for a dense symmetric positive definite A, unrolled for ``iters`` steps, in place."""
    r = b - A @ x
    p = np.copy(r)
    Ap = np.zeros_like(x)
    rs = np.dot(r, r)
    for it in range(iters):
        Ap[:] = A @ p
        alpha = rs / np.dot(p, Ap)
        x += alpha * p
        r -= alpha * Ap
        rs_new = np.dot(r, r)
        p[:] = r + (rs_new / rs) * p
        rs = rs_new


def products_asked_for_again(A, B, x, v, y, M):
    """Sums that an element-wise statement asks for again and again, which lowering computes
    once, into an array of their own: a product of a product, a product in np.outer and one
    broadcast along a 2-D statement, a row sum read through a new axis (a softmax over rows);
    in a loop whose trips overwrite those arrays, whose values the reverse sweep reads."""
    for it in range(2):
        y[:] = A @ (B @ y + x) / 8.0
        M[:, :] = 0.1 * np.outer(A @ y, v) + M * (B.T @ x)
        M[:, :] = np.exp(M) / np.sum(np.exp(M), axis=1)[:, None]
    return np.sum(M * M) + np.dot(y, A @ (B @ v))
