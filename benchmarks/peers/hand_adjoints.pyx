# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Hand-written Cython primals and adjoints of the Jacobi, SpMV and triangular-solve kernels: the
same code as the hand Numba adjoints (peers/numba_peer.py, which says what each saves), compiled
by Cython with adsrc's own directives and C flags, so that its adjoint/primal ratio measures the
adjoint code and not the compiler.  Same calling convention as there."""

import numpy as np
from libc.stdint cimport int32_t


def jacobi_damped(const int32_t[::1] indptr, const int32_t[::1] indices,
                  const double[::1] data, const double[::1] dinv, double[::1] x,
                  const double[::1] b, double alpha, Py_ssize_t iters):
    cdef Py_ssize_t n = b.shape[0], it, i, k
    cdef double[::1] r = np.zeros(n)
    cdef double acc
    with nogil:
        for it in range(iters):
            for i in range(n):
                acc = b[i]
                for k in range(indptr[i], indptr[i + 1]):
                    acc -= data[k] * x[indices[k]]
                r[i] = acc
            for i in range(n):
                x[i] += alpha * dinv[i] * r[i]


def jacobi_damped_adj(const int32_t[::1] indptr, const int32_t[::1] indices,
                      const double[::1] data, const double[::1] dinv, double[::1] x,
                      const double[::1] b, double alpha, Py_ssize_t iters,
                      double[::1] x_bar, double[::1] data_bar, double[::1] b_bar):
    cdef Py_ssize_t n = b.shape[0], it, i, k, j
    cdef double[:, ::1] tape = np.empty((iters, n))
    cdef double[::1] r = np.zeros(n)
    cdef double[::1] rb = np.empty(n)
    cdef double acc, alpha_bar = 0.0
    with nogil:
        for it in range(iters):
            tape[it, :] = x
            for i in range(n):
                acc = b[i]
                for k in range(indptr[i], indptr[i + 1]):
                    acc -= data[k] * x[indices[k]]
                r[i] = acc
            for i in range(n):
                x[i] += alpha * dinv[i] * r[i]
        for it in range(iters - 1, -1, -1):
            for i in range(n):
                acc = b[i]
                for k in range(indptr[i], indptr[i + 1]):
                    acc -= data[k] * tape[it, indices[k]]
                alpha_bar += dinv[i] * acc * x_bar[i]
                rb[i] = alpha * dinv[i] * x_bar[i]
            for i in range(n):
                b_bar[i] += rb[i]
                for k in range(indptr[i], indptr[i + 1]):
                    j = indices[k]
                    data_bar[k] -= rb[i] * tape[it, j]
                    x_bar[j] -= rb[i] * data[k]
    return alpha_bar


def jacobi_csr(const int32_t[::1] indptr, const int32_t[::1] indices, const double[::1] data,
               double[::1] x, const double[::1] b, double omega, Py_ssize_t iters):
    cdef Py_ssize_t n = b.shape[0], it, i, k, j
    cdef double[::1] xold = np.zeros(n)
    cdef double acc, diag
    with nogil:
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


def jacobi_csr_adj(const int32_t[::1] indptr, const int32_t[::1] indices,
                   const double[::1] data, double[::1] x, const double[::1] b, double omega,
                   Py_ssize_t iters, double[::1] x_bar, double[::1] data_bar, double[::1] b_bar):
    cdef Py_ssize_t n = b.shape[0], it, i, k, j, kd
    cdef double[:, ::1] tape = np.empty((iters, n))
    cdef double[::1] xob = np.empty(n)
    cdef double acc, diag, q, xb, accb, omega_bar = 0.0
    with nogil:
        for it in range(iters):
            tape[it, :] = x
            for i in range(n):
                acc = b[i]
                diag = 0.0
                for k in range(indptr[i], indptr[i + 1]):
                    j = indices[k]
                    if j == i:
                        diag = data[k]
                    else:
                        acc -= data[k] * tape[it, j]
                x[i] = (1.0 - omega) * tape[it, i] + omega * acc / diag
        for it in range(iters - 1, -1, -1):
            xob[:] = 0.0
            for i in range(n):
                acc = b[i]
                diag = 0.0
                kd = -1
                for k in range(indptr[i], indptr[i + 1]):
                    j = indices[k]
                    if j == i:
                        diag = data[k]
                        kd = k
                    else:
                        acc -= data[k] * tape[it, j]
                q = acc / diag
                xb = x_bar[i]
                omega_bar += xb * (q - tape[it, i])
                xob[i] += (1.0 - omega) * xb
                accb = omega * xb / diag
                data_bar[kd] -= accb * q
                b_bar[i] += accb
                for k in range(indptr[i], indptr[i + 1]):
                    j = indices[k]
                    if j != i:
                        data_bar[k] -= accb * tape[it, j]
                        xob[j] -= accb * data[k]
            x_bar[:] = xob
    return omega_bar


def spmv(const int32_t[::1] indptr, const int32_t[::1] indices, const double[::1] data,
         const double[::1] x, double[::1] y):
    cdef Py_ssize_t i, k
    cdef double acc
    with nogil:
        for i in range(y.shape[0]):
            acc = 0.0
            for k in range(indptr[i], indptr[i + 1]):
                acc += data[k] * x[indices[k]]
            y[i] = acc


def spmv_adj(const int32_t[::1] indptr, const int32_t[::1] indices, const double[::1] data,
             const double[::1] x, double[::1] y, double[::1] y_bar, double[::1] data_bar,
             double[::1] x_bar):
    cdef Py_ssize_t i, k, j
    cdef double yb
    spmv(indptr, indices, data, x, y)
    with nogil:
        for i in range(y.shape[0]):
            yb = y_bar[i]
            for k in range(indptr[i], indptr[i + 1]):
                j = indices[k]
                data_bar[k] += yb * x[j]
                x_bar[j] += yb * data[k]
            y_bar[i] = 0.0


def spmv_transpose(const int32_t[::1] indptr, const int32_t[::1] indices,
                   const double[::1] data, const double[::1] x, double[::1] y):
    cdef Py_ssize_t i, k
    cdef double xi
    with nogil:
        y[:] = 0.0
        for i in range(x.shape[0]):
            xi = x[i]
            for k in range(indptr[i], indptr[i + 1]):
                y[indices[k]] += data[k] * xi


def spmv_transpose_adj(const int32_t[::1] indptr, const int32_t[::1] indices,
                       const double[::1] data, const double[::1] x, double[::1] y,
                       double[::1] y_bar, double[::1] data_bar, double[::1] x_bar):
    cdef Py_ssize_t i, k
    cdef double xi, yb, acc
    spmv_transpose(indptr, indices, data, x, y)
    with nogil:
        for i in range(x.shape[0]):
            xi = x[i]
            acc = 0.0
            for k in range(indptr[i], indptr[i + 1]):
                yb = y_bar[indices[k]]
                data_bar[k] += yb * xi
                acc += yb * data[k]
            x_bar[i] += acc
        y_bar[:] = 0.0


cdef inline void tri_solve(const int32_t[::1] indptr, const int32_t[::1] indices,
                           const double[::1] data, double[::1] x, bint lower) noexcept nogil:
    cdef Py_ssize_t n = x.shape[0], t, i, k, j
    cdef double acc, diag
    for t in range(n):
        i = t if lower else n - 1 - t
        acc = x[i]
        diag = 1.0
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            if (j < i) if lower else (j > i):
                acc -= data[k] * x[j]
            elif j == i:
                diag = data[k]
        x[i] = acc / diag


cdef inline void tri_solve_adj(const int32_t[::1] indptr, const int32_t[::1] indices,
                               const double[::1] data, double[::1] x, bint lower,
                               double[::1] x_bar, double[::1] data_bar) noexcept nogil:
    cdef Py_ssize_t n = x.shape[0], t, i, k, j, kd
    cdef double diag, accb
    tri_solve(indptr, indices, data, x, lower)
    for t in range(n):
        i = n - 1 - t if lower else t
        diag = 1.0
        kd = -1
        for k in range(indptr[i], indptr[i + 1]):
            if indices[k] == i:
                diag = data[k]
                kd = k
        accb = x_bar[i] / diag
        if kd >= 0:
            data_bar[kd] -= accb * x[i]
        x_bar[i] = accb
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            if (j < i) if lower else (j > i):
                data_bar[k] -= accb * x[j]
                x_bar[j] -= accb * data[k]


def lower_solve(const int32_t[::1] indptr, const int32_t[::1] indices, const double[::1] data,
                double[::1] x):
    tri_solve(indptr, indices, data, x, True)


def upper_solve(const int32_t[::1] indptr, const int32_t[::1] indices, const double[::1] data,
                double[::1] x):
    tri_solve(indptr, indices, data, x, False)


def lower_solve_adj(const int32_t[::1] indptr, const int32_t[::1] indices,
                    const double[::1] data, double[::1] x, double[::1] x_bar,
                    double[::1] data_bar):
    tri_solve_adj(indptr, indices, data, x, True, x_bar, data_bar)


def upper_solve_adj(const int32_t[::1] indptr, const int32_t[::1] indices,
                    const double[::1] data, double[::1] x, double[::1] x_bar,
                    double[::1] data_bar):
    tri_solve_adj(indptr, indices, data, x, False, x_bar, data_bar)
