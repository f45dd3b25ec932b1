"""Scalar kernels with a checkpointed loop, for Hessian-vector products
(tests/test_checkpointed_hessians.py).

A heavy-ball iteration: the velocity v and the coefficients s are state (s starts as a copy of
c, so c's derivatives come through that copy alone), u0 (a copy of the start) is read by every
step and after the loop, old is a scratch array the step writes; the step reads the loop
variable, and the code after the loop writes v and u before the loss reads them.  One kernel per
schedule, each marking the same loop, and the kernel without the marker, whose Hessian-vector
products (every step taped) are the reference.
"""

import math

import numpy as np

import adsrc
from checkpointed_loop_kernels import gauss_seidel_plain


def heavy_ball_step(u, v, s, u0, old, beta, it):
    n = len(u)
    for i in range(n):
        old[i] = u[i]
    for i in range(n):
        v[i] = beta * v[i] - 0.1 * (old[i] - u0[i]) * s[i] - 0.05 * it * math.sin(old[i])
        u[i] = old[i] + v[i]
        s[i] = s[i] + 0.01 * old[i] * u[i] * u[i]


def heavy_ball_loss(u, v, s, u0, beta):
    v *= 0.5
    for i in range(len(u)):
        u[i] = u[i] + v[i] * s[i] - 0.1 * u0[i]
    return np.dot(u, u) + beta * np.dot(v, s)


def heavy_ball_plain(u, c, beta, nsteps):
    v = np.zeros_like(u)
    u0 = np.copy(u)
    s = c.copy()
    old = np.empty(len(u))
    for it in range(nsteps):
        heavy_ball_step(u, v, s, u0, old, beta, it)
    return heavy_ball_loss(u, v, s, u0, beta)


def heavy_ball_binomial(u, c, beta, nsteps):
    v = np.zeros_like(u)
    u0 = np.copy(u)
    s = c.copy()
    old = np.empty(len(u))
    for it in adsrc.checkpointed(range(nsteps), snapshots=3):
        heavy_ball_step(u, v, s, u0, old, beta, it)
    return heavy_ball_loss(u, v, s, u0, beta)


def heavy_ball_periodic(u, c, beta, nsteps):
    v = np.zeros_like(u)
    u0 = np.copy(u)
    s = c.copy()
    old = np.empty(len(u))
    for it in adsrc.checkpointed(range(nsteps), schedule="periodic", snapshots=4):
        heavy_ball_step(u, v, s, u0, old, beta, it)
    return heavy_ball_loss(u, v, s, u0, beta)


def heavy_ball_store_all(u, c, beta, nsteps):
    v = np.zeros_like(u)
    u0 = np.copy(u)
    s = c.copy()
    old = np.empty(len(u))
    for it in adsrc.checkpointed(range(nsteps), schedule="store_all"):
        heavy_ball_step(u, v, s, u0, old, beta, it)
    return heavy_ball_loss(u, v, s, u0, beta)


# a budget store_all does not fit for the tangent's state and tapes (test_checkpointed_hessians)
BUDGET = 3000


def heavy_ball_budget(u, c, beta, nsteps):
    v = np.zeros_like(u)
    u0 = np.copy(u)
    s = c.copy()
    old = np.empty(len(u))
    for it in adsrc.checkpointed(range(nsteps), max_tape_bytes=3000):
        heavy_ball_step(u, v, s, u0, old, beta, it)
    return heavy_ball_loss(u, v, s, u0, beta)


def gauss_seidel_energy(indptr, indices, data, x, b, sweeps):
    """Gauss-Seidel sweeps under a checkpointed loop, then an energy: a kernel with index
    arrays, whose int32 and int64 calls are two specialisations (tests/test_threads.py)."""
    for it in adsrc.checkpointed(range(sweeps), snapshots=1):
        gauss_seidel_plain(indptr, indices, data, x, b, 1)
    s = 0.0
    for i in range(len(b)):
        s += x[i] * x[i] * x[i]
    return s
