"""Kernels with a checkpointed loop inside (``for it in adsrc.checkpointed(range(n), ...)``), for
tests/test_checkpointed_loops.py, each family with the same kernel without the marker (the
reference: its plain adjoint tapes every step).

The kernels with a marker allocate their work arrays inside the loop body (each step its own);
the references allocate them once before the loop, as adsrc requires of a plain loop.  The refused
forms are at the end; the line each error must point at carries a trailing ``# <-``.

adsrc reads this file with ``inspect``: keep it a real module, no decorators.
"""

import math

import numpy as np

import adsrc
from adsrc import checkpointed


# Gauss-Seidel, the matrix values active ----------------------------------------------------------

def gauss_seidel_plain(indptr, indices, data, x, b, sweeps):
    n = len(b)
    for sweep in range(sweeps):
        for i in range(n):
            acc = b[i]
            diag = 1.0
            for k in range(indptr[i], indptr[i + 1]):
                if indices[k] == i:
                    diag = data[k]
                else:
                    acc -= data[k] * x[indices[k]]
            x[i] = acc / diag


def gauss_seidel_binomial(indptr, indices, data, x, b, sweeps):
    n = len(b)
    for sweep in adsrc.checkpointed(range(sweeps), snapshots=3):
        for i in range(n):
            acc = b[i]
            diag = 1.0
            for k in range(indptr[i], indptr[i + 1]):
                if indices[k] == i:
                    diag = data[k]
                else:
                    acc -= data[k] * x[indices[k]]
            x[i] = acc / diag


def gauss_seidel_periodic(indptr, indices, data, x, b, sweeps):
    n = len(b)
    for sweep in adsrc.checkpointed(range(sweeps), schedule="periodic", snapshots=4):
        for i in range(n):
            acc = b[i]
            diag = 1.0
            for k in range(indptr[i], indptr[i + 1]):
                if indices[k] == i:
                    diag = data[k]
                else:
                    acc -= data[k] * x[indices[k]]
            x[i] = acc / diag


def gauss_seidel_store_all(indptr, indices, data, x, b, sweeps):
    n = len(b)
    for sweep in adsrc.checkpointed(range(sweeps), schedule="store_all"):
        for i in range(n):
            acc = b[i]
            diag = 1.0
            for k in range(indptr[i], indptr[i + 1]):
                if indices[k] == i:
                    diag = data[k]
                else:
                    acc -= data[k] * x[indices[k]]
            x[i] = acc / diag


# damped Jacobi, the weight active ----------------------------------------------------------------

def jacobi_plain(indptr, indices, data, dinv, x, b, alpha, iters):
    n = len(b)
    r = np.zeros(n)
    for it in range(iters):
        for i in range(n):
            acc = b[i]
            for k in range(indptr[i], indptr[i + 1]):
                acc -= data[k] * x[indices[k]]
            r[i] = acc
        x += alpha * dinv * r


def jacobi_binomial(indptr, indices, data, dinv, x, b, alpha, iters):
    n = len(b)
    for it in adsrc.checkpointed(range(iters), snapshots=3):
        r = np.zeros(n)
        for i in range(n):
            acc = b[i]
            for k in range(indptr[i], indptr[i + 1]):
                acc -= data[k] * x[indices[k]]
            r[i] = acc
        x += alpha * dinv * r


def jacobi_periodic(indptr, indices, data, dinv, x, b, alpha, iters):
    n = len(b)
    for it in adsrc.checkpointed(range(iters), schedule="periodic", snapshots=4):
        r = np.zeros(n)
        for i in range(n):
            acc = b[i]
            for k in range(indptr[i], indptr[i + 1]):
                acc -= data[k] * x[indices[k]]
            r[i] = acc
        x += alpha * dinv * r


def jacobi_store_all(indptr, indices, data, dinv, x, b, alpha, iters):
    n = len(b)
    for it in adsrc.checkpointed(range(iters), schedule="store_all"):
        r = np.zeros(n)
        for i in range(n):
            acc = b[i]
            for k in range(indptr[i], indptr[i + 1]):
                acc -= data[k] * x[indices[k]]
            r[i] = acc
        x += alpha * dinv * r


# explicit reaction-diffusion steps, with a time-dependent source (the body reads the step) -------
#   u_t = d(x) u_xx + r u (1 - u) / (1 + u^2) + 0.1 sin(t),  t = it * dt

def reaction_diffusion_plain(u, d, r, dt, nsteps):
    n = len(u)
    old = np.zeros(n)
    for it in range(nsteps):
        t = it * dt
        for i in range(n):
            old[i] = u[i]
        for i in range(1, n - 1):
            lap = old[i - 1] - 2.0 * old[i] + old[i + 1]
            growth = r * old[i] * (1.0 - old[i]) / (1.0 + old[i] * old[i])
            u[i] = old[i] + dt * (d[i] * lap + growth + 0.1 * math.sin(t))


def reaction_diffusion_binomial(u, d, r, dt, nsteps):
    n = len(u)
    for it in checkpointed(range(nsteps), snapshots=3):
        t = it * dt
        old = np.copy(u)
        for i in range(1, n - 1):
            lap = old[i - 1] - 2.0 * old[i] + old[i + 1]
            growth = r * old[i] * (1.0 - old[i]) / (1.0 + old[i] * old[i])
            u[i] = old[i] + dt * (d[i] * lap + growth + 0.1 * math.sin(t))


def reaction_diffusion_periodic(u, d, r, dt, nsteps):
    n = len(u)
    for it in checkpointed(range(nsteps), schedule="periodic", snapshots=4):
        t = it * dt
        old = np.copy(u)
        for i in range(1, n - 1):
            lap = old[i - 1] - 2.0 * old[i] + old[i + 1]
            growth = r * old[i] * (1.0 - old[i]) / (1.0 + old[i] * old[i])
            u[i] = old[i] + dt * (d[i] * lap + growth + 0.1 * math.sin(t))


def reaction_diffusion_store_all(u, d, r, dt, nsteps):
    n = len(u)
    for it in checkpointed(range(nsteps), schedule="store_all"):
        t = it * dt
        old = np.copy(u)
        for i in range(1, n - 1):
            lap = old[i - 1] - 2.0 * old[i] + old[i + 1]
            growth = r * old[i] * (1.0 - old[i]) / (1.0 + old[i] * old[i])
            u[i] = old[i] + dt * (d[i] * lap + growth + 0.1 * math.sin(t))


# statements before and after the loop, and a return value (adsrc.grad, value_and_grad) -----------

def many_sweeps_plain(data, indices, indptr, b, x, iters):
    n = len(b)
    w = 0.5 * data[0]
    for it in range(iters):
        for i in range(n):
            acc = b[i]
            diag = 1.0
            for k in range(indptr[i], indptr[i + 1]):
                if indices[k] == i:
                    diag = data[k]
                else:
                    acc -= data[k] * x[indices[k]]
            x[i] = acc / diag
    x[0] = w * x[0]
    return np.dot(x, x) + w * b[0]


def many_sweeps(data, indices, indptr, b, x, iters):
    n = len(b)
    w = 0.5 * data[0]
    for it in adsrc.checkpointed(range(iters), snapshots=2):
        for i in range(n):
            acc = b[i]
            diag = 1.0
            for k in range(indptr[i], indptr[i + 1]):
                if indices[k] == i:
                    diag = data[k]
                else:
                    acc -= data[k] * x[indices[k]]
            x[i] = acc / diag
    x[0] = w * x[0]
    return np.dot(x, x) + w * b[0]


# a cheap step for counting step executions over 1000 steps ------------------------------------

def tiny_plain(x, a, nsteps):
    for it in range(nsteps):
        x0 = x[0]
        x[0] = a * math.sin(x0) + 0.5 * x[1]
        x[1] = 0.5 * x0 + 0.25 * math.tanh(x[1])


def tiny(x, a, nsteps):
    for it in adsrc.checkpointed(range(nsteps), snapshots=10):
        x0 = x[0]
        x[0] = a * math.sin(x0) + 0.5 * x[1]
        x[1] = 0.5 * x0 + 0.25 * math.tanh(x[1])


# refused forms (test_checkpointed_loops.REFUSED says what each error says) ----------------------

def nested_marker(x, n):
    for sweep in range(2):
        for it in adsrc.checkpointed(range(n), snapshots=2):  # <-
            x[0] = 0.5 * x[0]


def two_markers(x, n):
    for it in adsrc.checkpointed(range(n), snapshots=2):
        x[0] = 0.5 * x[0]
    for it in adsrc.checkpointed(range(n), snapshots=2):  # <-
        x[1] = 0.5 * x[1]


def range_with_start(x, n):
    for it in adsrc.checkpointed(range(1, n), snapshots=2):  # <-
        x[0] = 0.5 * x[0]


def trips_from_expression(x, n):
    for it in adsrc.checkpointed(range(2 * n), snapshots=2):  # <-
        x[0] = 0.5 * x[0]


def snapshots_from_argument(x, n, k):
    for it in adsrc.checkpointed(range(n), snapshots=k):  # <-
        x[0] = 0.5 * x[0]


def no_snapshots(x, n):
    for it in adsrc.checkpointed(range(n)):  # <-
        x[0] = 0.5 * x[0]


def unknown_schedule(x, n):
    for it in adsrc.checkpointed(range(n), schedule="revolve", snapshots=2):  # <-
        x[0] = 0.5 * x[0]


def array_written_before(x, n):
    x[0] = 1.0  # <-
    for it in adsrc.checkpointed(range(n), snapshots=2):
        x[0] = 0.5 * x[0]


def scalar_carried(x, n):
    s = 0.0
    for it in adsrc.checkpointed(range(n), snapshots=2):
        s = s + x[0]  # <-
        x[0] = 0.5 * x[0]
    return s


def scalar_read_after(x, n):
    for it in adsrc.checkpointed(range(n), snapshots=2):
        last = x[0]
        x[0] = 0.5 * last
    return last * x[1]  # <-


def read_before_assigned(x, n):
    for it in adsrc.checkpointed(range(n), snapshots=2):
        if it > 0:
            x[1] = prev  # <-
        prev = x[0]
        x[0] = 0.5 * x[0]


def break_out(x, n):
    for it in adsrc.checkpointed(range(n), snapshots=2):
        x[0] = 0.5 * x[0]
        if x[0] < 0.1:
            break  # <-


def work_array_before(x, n):
    work = np.zeros(len(x))  # <-
    for it in adsrc.checkpointed(range(n), snapshots=2):
        for i in range(len(x)):
            work[i] = x[i]
        for i in range(len(x)):
            x[i] = 0.5 * work[i]


def state_read_before(x, n):
    x0 = x[0]  # <-
    for it in adsrc.checkpointed(range(n), snapshots=2):
        x[0] = 0.5 * x[0] + x0


def called_marked(x, n):
    two_steps(x, n)


def two_steps(x, n):
    for it in adsrc.checkpointed(range(n), snapshots=2):  # <-
        x[0] = 0.5 * x[0]
