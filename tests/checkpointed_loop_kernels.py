"""Kernels with a checkpointed loop inside (``for it in adsrc.checkpointed(range(n), ...)``), for
tests/test_checkpointed_loops.py, each family with the same kernel without the marker (the
reference: its plain adjoint tapes every step).

Work arrays: damped Jacobi allocates its residual before the marked loop (the shipped
``jacobi_damped`` with the marker), the heavy-ball kernel allocates before the loop arrays that
carry values from step to step and out of the loop, and a copy that every step reads;
reaction-diffusion allocates its copy inside the loop body (each step its own), its reference
before the loop.  The refused forms are at the end; the line each error must point at carries a
trailing ``# <-``.

adsrc reads this file with ``inspect``: keep it a real module, no decorators.
"""

import math

import numpy as np

import adsrc
from adsrc import checkpointed
from adsrc.kernels.solvers import jacobi_damped as jacobi_plain  # noqa: F401 (the reference)


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


# damped Jacobi, the weight active: kernels/solvers.py's jacobi_damped, marked ---------------------

def jacobi_binomial(indptr, indices, data, dinv, x, b, alpha, iters):
    n = len(b)
    r = np.zeros(n)
    for it in adsrc.checkpointed(range(iters), snapshots=3):
        for i in range(n):
            acc = b[i]
            for k in range(indptr[i], indptr[i + 1]):
                acc -= data[k] * x[indices[k]]
            r[i] = acc
        x += alpha * dinv * r


def jacobi_periodic(indptr, indices, data, dinv, x, b, alpha, iters):
    n = len(b)
    r = np.zeros(n)
    for it in adsrc.checkpointed(range(iters), schedule="periodic", snapshots=4):
        for i in range(n):
            acc = b[i]
            for k in range(indptr[i], indptr[i + 1]):
                acc -= data[k] * x[indices[k]]
            r[i] = acc
        x += alpha * dinv * r


def jacobi_store_all(indptr, indices, data, dinv, x, b, alpha, iters):
    n = len(b)
    r = np.zeros(n)
    for it in adsrc.checkpointed(range(iters), schedule="store_all"):
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


# arrays allocated before the loop: carried from step to step, read by every step, read after ----
#   a heavy-ball iteration: the velocity v and the coefficients s are state (s starts as a copy
#   of c, so c's adjoint comes through that copy alone), u0 (a copy of the start) is read by every
#   step and after the loop, old is a scratch array; after the loop v and s are read, v updated

def heavy_ball_plain(u, c, beta, nsteps):
    n = len(u)
    v = np.zeros_like(u)
    u0 = np.copy(u)
    s = c.copy()
    old = np.empty(n)
    for it in range(nsteps):
        for i in range(n):
            old[i] = u[i]
        for i in range(n):
            v[i] = beta * v[i] - 0.1 * (old[i] - u0[i]) * s[i] - 0.05 * math.sin(old[i])
            u[i] = old[i] + v[i]
            s[i] = s[i] + 0.01 * old[i] * u[i]
    v *= 0.5
    for i in range(n):
        u[i] = u[i] + v[i] * s[i] - 0.1 * u0[i]


def heavy_ball_binomial(u, c, beta, nsteps):
    n = len(u)
    v = np.zeros_like(u)
    u0 = np.copy(u)
    s = c.copy()
    old = np.empty(n)
    for it in adsrc.checkpointed(range(nsteps), snapshots=3):
        for i in range(n):
            old[i] = u[i]
        for i in range(n):
            v[i] = beta * v[i] - 0.1 * (old[i] - u0[i]) * s[i] - 0.05 * math.sin(old[i])
            u[i] = old[i] + v[i]
            s[i] = s[i] + 0.01 * old[i] * u[i]
    v *= 0.5
    for i in range(n):
        u[i] = u[i] + v[i] * s[i] - 0.1 * u0[i]


def heavy_ball_periodic(u, c, beta, nsteps):
    n = len(u)
    v = np.zeros_like(u)
    u0 = np.copy(u)
    s = c.copy()
    old = np.empty(n)
    for it in adsrc.checkpointed(range(nsteps), schedule="periodic", snapshots=4):
        for i in range(n):
            old[i] = u[i]
        for i in range(n):
            v[i] = beta * v[i] - 0.1 * (old[i] - u0[i]) * s[i] - 0.05 * math.sin(old[i])
            u[i] = old[i] + v[i]
            s[i] = s[i] + 0.01 * old[i] * u[i]
    v *= 0.5
    for i in range(n):
        u[i] = u[i] + v[i] * s[i] - 0.1 * u0[i]


def heavy_ball_store_all(u, c, beta, nsteps):
    n = len(u)
    v = np.zeros_like(u)
    u0 = np.copy(u)
    s = c.copy()
    old = np.empty(n)
    for it in adsrc.checkpointed(range(nsteps), schedule="store_all"):
        for i in range(n):
            old[i] = u[i]
        for i in range(n):
            v[i] = beta * v[i] - 0.1 * (old[i] - u0[i]) * s[i] - 0.05 * math.sin(old[i])
            u[i] = old[i] + v[i]
            s[i] = s[i] + 0.01 * old[i] * u[i]
    v *= 0.5
    for i in range(n):
        u[i] = u[i] + v[i] * s[i] - 0.1 * u0[i]


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


# a cheap step for counting step executions over 1000 steps; v, allocated before the loop, is state

def tiny_plain(x, a, nsteps):
    v = np.zeros(1)
    for it in range(nsteps):
        x0 = x[0]
        v[0] = 0.5 * v[0] + a * math.sin(x0)
        x[0] = v[0] + 0.5 * x[1]
        x[1] = 0.5 * x0 + 0.25 * math.tanh(x[1])


def tiny(x, a, nsteps):
    v = np.zeros(1)
    for it in adsrc.checkpointed(range(nsteps), snapshots=10):
        x0 = x[0]
        v[0] = 0.5 * v[0] + a * math.sin(x0)
        x[0] = v[0] + 0.5 * x[1]
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
        if x[0] < 0.1:
            break  # <-
        x[0] = 0.5 * x[0]


def break_or_else(x, n):
    for it in adsrc.checkpointed(range(n), snapshots=2):
        x[0] = 0.5 * x[0]
        if x[0] < 0.1:
            break  # <-
        else:
            x[1] = x[1] + 1.0


def continue_step(x, n):
    for it in adsrc.checkpointed(range(n), snapshots=2):
        if x[0] < 0.1:
            continue  # <-
        x[0] = 0.5 * x[0]


def array_bound_before(x, n):
    work = 0.5 * x  # <-
    for it in adsrc.checkpointed(range(n), snapshots=2):
        x[0] = 0.5 * work[1]


def allocated_then_updated(x, n):
    work = np.copy(x)
    work += 1.0  # <-
    for it in adsrc.checkpointed(range(n), snapshots=2):
        x[0] = 0.5 * work[1]


def allocated_over_argument(x, n):
    x = np.copy(x)  # <-
    for it in adsrc.checkpointed(range(n), snapshots=2):
        x[0] = 0.5 * x[1]


def allocated_state_read_before(x, n):
    work = np.copy(x)
    w0 = work[0]  # <-
    for it in adsrc.checkpointed(range(n), snapshots=2):
        work[1] = x[0]
        x[0] = 0.5 * w0 + work[1]


def state_read_before(x, n):
    x0 = x[0]  # <-
    for it in adsrc.checkpointed(range(n), snapshots=2):
        x[0] = 0.5 * x[0] + x0


def called_marked(x, n):
    two_steps(x, n)


def two_steps(x, n):
    for it in adsrc.checkpointed(range(n), snapshots=2):  # <-
        x[0] = 0.5 * x[0]


def step_allocates_by_trip(x, n):
    for it in adsrc.checkpointed(range(n), snapshots=2):
        head = np.zeros(it + 1)  # <-
        head[:] = x[:it + 1]
        x[0] = 0.5 * x[0] + 0.1 * np.dot(head, head)


# a loop run until a test holds: 'if test: break' ends its body (at most `sweeps` steps) ----------

def sweep_and_residual(indptr, indices, data, x, b, r):
    n = len(b)
    for i in range(n):
        acc = b[i]
        diag = 1.0
        for k in range(indptr[i], indptr[i + 1]):
            if indices[k] == i:
                diag = data[k]
            else:
                acc -= data[k] * x[indices[k]]
        x[i] = acc / diag
    for i in range(n):
        acc = b[i]
        for k in range(indptr[i], indptr[i + 1]):
            acc -= data[k] * x[indices[k]]
        r[i] = acc


def sweeps_to_tolerance(indptr, indices, data, x, b, tol, sweeps):
    """(sweeps, why the loop stopped: "until", "max_steps" or None for no sweeps) of the loops
    to a tolerance below, counted by running their step as Python."""
    r = np.zeros(len(b))
    for count in range(1, sweeps + 1):
        sweep_and_residual(indptr, indices, data, x, b, r)
        if np.dot(r, r) <= tol * tol:
            return count, "until"
    return sweeps, "max_steps" if sweeps else None


def to_tolerance_plain(indptr, indices, data, x, b, tol, sweeps):
    r = np.zeros(len(b))
    for it in range(sweeps):
        sweep_and_residual(indptr, indices, data, x, b, r)
        rr = np.dot(r, r)
        if rr <= tol * tol:
            break
    return np.dot(x, x) + np.dot(r, b)


def to_tolerance_binomial(indptr, indices, data, x, b, tol, sweeps):
    r = np.zeros(len(b))
    for it in adsrc.checkpointed(range(sweeps), snapshots=2):
        sweep_and_residual(indptr, indices, data, x, b, r)
        rr = np.dot(r, r)
        if rr <= tol * tol:
            break
    return np.dot(x, x) + np.dot(r, b)


def to_tolerance_periodic(indptr, indices, data, x, b, tol, sweeps):
    r = np.zeros(len(b))
    for it in adsrc.checkpointed(range(sweeps), schedule="periodic", snapshots=2):
        sweep_and_residual(indptr, indices, data, x, b, r)
        rr = np.dot(r, r)
        if rr <= tol * tol:
            break
    return np.dot(x, x) + np.dot(r, b)


def to_tolerance_store_all(indptr, indices, data, x, b, tol, sweeps):
    r = np.zeros(len(b))
    for it in adsrc.checkpointed(range(sweeps), schedule="store_all"):
        sweep_and_residual(indptr, indices, data, x, b, r)
        rr = np.dot(r, r)
        if rr <= tol * tol:
            break
    return np.dot(x, x) + np.dot(r, b)
