"""Hand-written Numba adjoints: the reference for "adjoint/primal" of a compiled kernel.

For every kernel there is an ``@numba.njit`` primal (the kernel as written) and an ``@numba.njit``
hand adjoint: a forward sweep that saves what the reverse sweep needs, then the reverse sweep, in
the same calling convention as ``adsrc``'s ``f.adjoint`` (the mutated arrays end in their final
state, ``x_bar``/``y_bar`` enter holding the adjoint of the final value and leave holding the
adjoint of the initial value, ``data_bar``/``b_bar`` are incremented, the scalar's adjoint is
returned).  What is saved is the minimum a person would save by hand:

* Gauss-Seidel (forward/backward/symmetric) and SOR: the old ``x[i]`` before each overwrite,
  n floats per sweep; the row sums are recomputed in the reverse sweep;
* damped and weighted Jacobi: the iterate before each iteration, n floats per iteration; the
  residual is recomputed;
* SpMV, SpMV^T and the triangular solves: nothing (the solves read only final values).

``verify`` checks every hand adjoint against central finite differences of the primal.
"""

import numba
import numpy as np

from peers import hand

NAME = "Numba"

# error_model="numpy": a float division by zero gives inf/nan (as in C and Cython's cdivision)
# instead of a per-division check raising ZeroDivisionError; bounds are not checked (default).
jit = numba.njit(cache=True, nogil=True, error_model="numpy")


def load():
    return numba.__version__


# ---------------------------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------------------------

# ---- Gauss-Seidel family ----------------------------------------------------------------

@jit
def gs_pass(indptr, indices, data, x, b, relax, omega, forward, tape):
    """One SOR pass (relax) or Gauss-Seidel pass in row order (forward or backward).
    Saves the old x[i] into tape[i] when tape has n entries."""
    n = len(b)
    save = len(tape) == n
    for t in range(n):
        i = t if forward else n - 1 - t
        acc = b[i]
        diag = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            if j == i:
                diag = data[k]
            else:
                acc -= data[k] * x[j]
        if save:
            tape[i] = x[i]
        if not relax:
            x[i] = acc / diag
        else:
            x[i] = (1.0 - omega) * x[i] + omega * acc / diag


@jit
def gs_pass_rev(indptr, indices, data, x, b, relax, omega, forward, tape,
                x_bar, data_bar, b_bar):
    """Reverse of gs_pass: x holds the state after the pass and is restored to the state
    before it.  Returns the adjoint of omega."""
    n = len(b)
    omega_bar = 0.0
    for t in range(n):
        i = n - 1 - t if forward else t        # rows in the opposite order
        xnew = x[i]
        xold = tape[i]
        x[i] = xold
        acc = b[i]
        diag = 0.0
        kd = -1
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            if j == i:
                diag = data[k]
                kd = k
            else:
                acc -= data[k] * x[j]
        xb = x_bar[i]
        if not relax:
            q = xnew
            x_bar[i] = 0.0
            accb = xb / diag
        else:
            q = acc / diag
            omega_bar += xb * (q - xold)
            x_bar[i] = (1.0 - omega) * xb
            accb = omega * xb / diag
        data_bar[kd] -= accb * q
        b_bar[i] += accb
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            if j != i:
                data_bar[k] -= accb * x[j]
                x_bar[j] -= accb * data[k]
    return omega_bar



@jit
def gauss_seidel(indptr, indices, data, x, b, sweeps):
    no_tape = np.empty(0)
    for s in range(sweeps):
        gs_pass(indptr, indices, data, x, b, False, 1.0, True, no_tape)


@jit
def gauss_seidel_backward(indptr, indices, data, x, b, sweeps):
    no_tape = np.empty(0)
    for s in range(sweeps):
        gs_pass(indptr, indices, data, x, b, False, 1.0, False, no_tape)


@jit
def gauss_seidel_symmetric(indptr, indices, data, x, b, sweeps):
    no_tape = np.empty(0)
    for s in range(sweeps):
        gs_pass(indptr, indices, data, x, b, False, 1.0, True, no_tape)
        gs_pass(indptr, indices, data, x, b, False, 1.0, False, no_tape)


@jit
def sor(indptr, indices, data, x, b, omega, sweeps):
    no_tape = np.empty(0)
    for s in range(sweeps):
        gs_pass(indptr, indices, data, x, b, True, omega, True, no_tape)


@jit
def gs_family_adj(indptr, indices, data, x, b, relax, omega, sweeps, pattern,
                  x_bar, data_bar, b_bar):
    """pattern: 0 forward, 1 backward, 2 symmetric (forward then backward)."""
    n = len(b)
    passes = 2 if pattern == 2 else 1
    tape = np.empty((sweeps * passes, n))
    for s in range(sweeps):
        for p in range(passes):
            forward = pattern == 0 or (pattern == 2 and p == 0)
            gs_pass(indptr, indices, data, x, b, relax, omega, forward,
                    tape[s * passes + p])
    xw = x.copy()
    omega_bar = 0.0
    for s in range(sweeps - 1, -1, -1):
        for p in range(passes - 1, -1, -1):
            forward = pattern == 0 or (pattern == 2 and p == 0)
            omega_bar += gs_pass_rev(indptr, indices, data, xw, b, relax, omega, forward,
                                     tape[s * passes + p], x_bar, data_bar, b_bar)
    return omega_bar


@jit
def gauss_seidel_adj(indptr, indices, data, x, b, sweeps, x_bar, data_bar, b_bar):
    gs_family_adj(indptr, indices, data, x, b, False, 1.0, sweeps, 0, x_bar, data_bar, b_bar)


@jit
def gauss_seidel_backward_adj(indptr, indices, data, x, b, sweeps, x_bar, data_bar, b_bar):
    gs_family_adj(indptr, indices, data, x, b, False, 1.0, sweeps, 1, x_bar, data_bar, b_bar)


@jit
def gauss_seidel_symmetric_adj(indptr, indices, data, x, b, sweeps, x_bar, data_bar, b_bar):
    gs_family_adj(indptr, indices, data, x, b, False, 1.0, sweeps, 2, x_bar, data_bar, b_bar)


@jit
def sor_adj(indptr, indices, data, x, b, omega, sweeps, x_bar, data_bar, b_bar):
    return gs_family_adj(indptr, indices, data, x, b, True, omega, sweeps, 0,
                         x_bar, data_bar, b_bar)

# ---- Jacobi ------------------------------------------------------------------------------


@jit
def jacobi_damped(indptr, indices, data, dinv, x, b, alpha, iters):
    n = len(b)
    r = np.zeros(n)
    for it in range(iters):
        for i in range(n):
            acc = b[i]
            for k in range(indptr[i], indptr[i + 1]):
                acc -= data[k] * x[indices[k]]
            r[i] = acc
        for i in range(n):
            x[i] += alpha * dinv[i] * r[i]


@jit
def jacobi_damped_adj(indptr, indices, data, dinv, x, b, alpha, iters,
                      x_bar, data_bar, b_bar):
    n = len(b)
    tape = np.empty((iters, n))
    r = np.zeros(n)
    for it in range(iters):
        tape[it] = x
        for i in range(n):
            acc = b[i]
            for k in range(indptr[i], indptr[i + 1]):
                acc -= data[k] * x[indices[k]]
            r[i] = acc
        for i in range(n):
            x[i] += alpha * dinv[i] * r[i]
    alpha_bar = 0.0
    rb = np.empty(n)
    for it in range(iters - 1, -1, -1):
        xo = tape[it]
        for i in range(n):
            acc = b[i]
            for k in range(indptr[i], indptr[i + 1]):
                acc -= data[k] * xo[indices[k]]
            alpha_bar += dinv[i] * acc * x_bar[i]
            rb[i] = alpha * dinv[i] * x_bar[i]
        for i in range(n):
            b_bar[i] += rb[i]
            for k in range(indptr[i], indptr[i + 1]):
                j = indices[k]
                data_bar[k] -= rb[i] * xo[j]
                x_bar[j] -= rb[i] * data[k]
    return alpha_bar


@jit
def jacobi_csr(indptr, indices, data, x, b, omega, iters):
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


@jit
def jacobi_csr_adj(indptr, indices, data, x, b, omega, iters, x_bar, data_bar, b_bar):
    n = len(b)
    tape = np.empty((iters, n))
    for it in range(iters):
        tape[it] = x
        xold = tape[it]
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
    omega_bar = 0.0
    xob = np.empty(n)
    for it in range(iters - 1, -1, -1):
        xo = tape[it]
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
                    acc -= data[k] * xo[j]
            q = acc / diag
            xb = x_bar[i]
            omega_bar += xb * (q - xo[i])
            xob[i] += (1.0 - omega) * xb
            accb = omega * xb / diag
            data_bar[kd] -= accb * q
            b_bar[i] += accb
            for k in range(indptr[i], indptr[i + 1]):
                j = indices[k]
                if j != i:
                    data_bar[k] -= accb * xo[j]
                    xob[j] -= accb * data[k]
        x_bar[:] = xob
    return omega_bar

# ---- products and triangular solves ------------------------------------------------------


@jit
def spmv(indptr, indices, data, x, y):
    for i in range(len(y)):
        acc = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            acc += data[k] * x[indices[k]]
        y[i] = acc


@jit
def spmv_adj(indptr, indices, data, x, y, y_bar, data_bar, x_bar):
    spmv(indptr, indices, data, x, y)
    for i in range(len(y)):
        yb = y_bar[i]
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            data_bar[k] += yb * x[j]
            x_bar[j] += yb * data[k]
        y_bar[i] = 0.0


@jit
def spmv_transpose(indptr, indices, data, x, y):
    for j in range(len(y)):
        y[j] = 0.0
    for i in range(len(x)):
        xi = x[i]
        for k in range(indptr[i], indptr[i + 1]):
            y[indices[k]] += data[k] * xi


@jit
def spmv_transpose_adj(indptr, indices, data, x, y, y_bar, data_bar, x_bar):
    spmv_transpose(indptr, indices, data, x, y)
    for i in range(len(x)):
        xi = x[i]
        acc = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            yb = y_bar[indices[k]]
            data_bar[k] += yb * xi
            acc += yb * data[k]
        x_bar[i] += acc
    for j in range(len(y)):
        y_bar[j] = 0.0


@jit
def tri_solve(indptr, indices, data, x, lower):
    n = len(x)
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


@jit
def tri_solve_adj(indptr, indices, data, x, lower, x_bar, data_bar):
    tri_solve(indptr, indices, data, x, lower)
    n = len(x)
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


@jit
def lower_solve(indptr, indices, data, x):
    tri_solve(indptr, indices, data, x, True)


@jit
def upper_solve(indptr, indices, data, x):
    tri_solve(indptr, indices, data, x, False)


@jit
def lower_solve_adj(indptr, indices, data, x, x_bar, data_bar):
    tri_solve_adj(indptr, indices, data, x, True, x_bar, data_bar)


@jit
def upper_solve_adj(indptr, indices, data, x, x_bar, data_bar):
    tri_solve_adj(indptr, indices, data, x, False, x_bar, data_bar)


PRIMALS = dict(
    gauss_seidel=gauss_seidel, gauss_seidel_backward=gauss_seidel_backward,
    gauss_seidel_symmetric=gauss_seidel_symmetric, sor=sor, jacobi_damped=jacobi_damped,
    jacobi_csr=jacobi_csr, spmv=spmv, spmv_transpose=spmv_transpose, lower_solve=lower_solve,
    upper_solve=upper_solve)

ADJOINTS = dict(
    gauss_seidel=gauss_seidel_adj, gauss_seidel_backward=gauss_seidel_backward_adj,
    gauss_seidel_symmetric=gauss_seidel_symmetric_adj, sor=sor_adj,
    jacobi_damped=jacobi_damped_adj, jacobi_csr=jacobi_csr_adj, spmv=spmv_adj,
    spmv_transpose=spmv_transpose_adj, lower_solve=lower_solve_adj,
    upper_solve=upper_solve_adj)


# ---------------------------------------------------------------------------------------------
# the peer interface
# ---------------------------------------------------------------------------------------------

def build(spec, problem):
    return hand.cases(PRIMALS, ADJOINTS, spec, problem)


def verify(spec, problem):
    return hand.verify(PRIMALS, ADJOINTS, spec, problem, "numba")


def tape_bytes(spec, n, sweeps):
    """Bytes the hand adjoint stores (its tape), for the table."""
    per_sweep = {"gauss_seidel": 1, "gauss_seidel_backward": 1, "gauss_seidel_symmetric": 2,
                 "sor": 1, "jacobi_damped": 1, "jacobi_csr": 1}.get(spec.name, 0)
    return 8 * n * sweeps * per_sweep
