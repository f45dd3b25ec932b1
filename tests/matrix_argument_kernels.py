"""Kernels that take SciPy sparse matrices as arguments (tests/test_matrix_arguments.py)."""

import math

import numpy as np
from scipy.sparse.linalg import spsolve

import adsrc
from adsrc.sparse import matvec, rmatvec


def products(A, x, y, z):
    y[:] = A @ x
    for i in range(len(y)):
        y[i] = math.tanh(y[i])
    z[:] = A.T @ y
    return np.dot(y, y) + np.dot(x, z)


def products_of_arrays(data, indices, indptr, x, y, z):
    """``products`` for a CSR matrix given by its arrays: an independent spelling."""
    y[:] = matvec(data, indices, indptr, x)
    for i in range(len(y)):
        y[i] = math.tanh(y[i])
    z[:] = rmatvec(data, indices, indptr, y, len(x))
    return np.dot(y, y) + np.dot(x, z)


def compliance(K, f, u):
    """The compliance f . K^-1 f (a docstring, which the statement building K goes after)."""
    u[:] = spsolve(K, f)
    return np.dot(f, u)


def clashing_name(A, x, y):
    A_data = 2.0
    y[:] = A @ x
    return np.dot(y, y) * A_data



def checkpointed_products(A, x, y, steps):
    for it in adsrc.checkpointed(range(steps), snapshots=2):
        y[:] = A @ x
        x[:] = 0.5 * y
    return np.dot(x, x)
