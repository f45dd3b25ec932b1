"""Step kernels for the checkpointing tests (``adsrc.checkpointed``): one sweep or time step each.

Written in the language subset of docs/API.md, like ``kernels.py``.  A step updates its state
arrays in place; a loop of ``steps`` calls is what ``adsrc.checkpointed`` differentiates.
Some steps come with the same loop written inside a kernel, whose plain adjoint is the second,
independent reference for the checkpointed ones.  The shipped Gauss-Seidel and damped Jacobi
kernels serve as steps directly, with ``sweeps``/``iters`` = 1.

adsrc reads this file with ``inspect``: keep it a real module, no decorators.
"""

import math

import numpy as np


def reaction_diffusion_step(u, d, r, dt):
    """One explicit Euler step of the 1-D Fisher-KPP reaction-diffusion equation
    u_t = d(x) u_xx + r u (1 - u) (grid spacing 1, end values fixed), with a smooth
    saturation of the growth term:  u[i] += dt (d[i] lap_i + r u_i (1 - u_i) / (1 + u_i^2))."""
    n = len(u)
    old = np.copy(u)
    for i in range(1, n - 1):
        lap = old[i - 1] - 2.0 * old[i] + old[i + 1]
        growth = r * old[i] * (1.0 - old[i]) / (1.0 + old[i] * old[i])
        u[i] = old[i] + dt * (d[i] * lap + growth)


def reaction_diffusion(u, d, r, dt, nsteps):
    """``nsteps`` steps of ``reaction_diffusion_step``: the loop written inside a kernel."""
    for s in range(nsteps):
        reaction_diffusion_step(u, d, r, dt)


def tiny_step(x, a):
    """A cheap nonlinear map of two values, for counting step executions over long loops."""
    x0 = x[0]
    x[0] = a * math.sin(x0) + 0.5 * x[1]
    x[1] = 0.5 * x0 + 0.25 * math.tanh(x[1])


def relay_step(x, y):
    """x <- y/2 + 0.1, then y <- x^2 with the new x.  The reverse sweep of one step reads x and
    y at their final values and needs none of their old ones, so it does not put them back:
    reversing several steps from one tape needs the restoring variant of the adjoint."""
    n = len(x)
    for i in range(n):
        x[i] = 0.5 * y[i] + 0.1
    for i in range(n):
        y[i] = x[i] * x[i]


def relay(x, y, nsteps):
    """``nsteps`` steps of ``relay_step`` inside a kernel."""
    for s in range(nsteps):
        relay_step(x, y)


def reads_only(x, b):
    """Writes no array: not a step kernel (the checkpointing tests expect an error)."""
    n = len(x)
    acc = 0.0
    for i in range(n):
        acc += x[i] * b[i]
    return acc

