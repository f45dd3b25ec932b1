"""Smooth scalar kernels for the Hessian-vector-product tests: loops, branches, in-place
updates, a while loop."""

import math


def norm_cubed(x):
    """``norm(x)**3 * x[-1] + x[0]**2``, the example of the issue."""
    n = x.shape[0]
    s = 0.0
    for i in range(n):
        s += x[i] * x[i]
    return math.sqrt(s) ** 3 * x[n - 1] + x[0] ** 2


def smoothed_energy(x, w, iters):
    """A few nonlinear in-place smoothing sweeps, then an energy with a branch per element."""
    n = x.shape[0]
    for it in range(iters):
        for i in range(1, n - 1):
            x[i] = x[i] + w * (x[i - 1] - 2.0 * x[i] + x[i + 1]) * x[i]
    e = 0.0
    for i in range(n):
        if x[i] > 0.0:
            e += x[i] ** 3
        else:
            e -= math.exp(x[i]) * x[i]
    return e


def damped_oscillation(x, k):
    """A while loop whose trip count depends on the data: steps until the energy is small."""
    e = x[0] * x[0] + x[1] * x[1]
    steps = 0
    while e > 1e-3 and steps < 50:
        x[0] = x[0] - k * math.sin(x[1])
        x[1] = x[1] + k * x[0] * 0.9
        e = 0.5 * e
        steps += 1
    return x[0] * x[1] + math.tanh(x[0]) + k * x[1] * x[1]


def smooth(u, v):
    return u * math.tanh(v) + 0.5 * math.sin(u)


def calls_in_a_loop(x, a):
    """A user kernel called with scalars in a backward loop: its adjoint and seed reach the
    tangent of its reverse sweep in the right order."""
    n = x.shape[0]
    for i in range(n - 2, 0, -1):
        x[i - 1] = smooth(x[i], a) * x[i] + x[i]
    s = 0.0
    for i in range(n):
        s += x[i] * x[i] * a
    return s


def grid_energy(u, c):
    """A nonlinear energy of a 2-D grid function: squared differences along both axes and a
    quartic term, so its Hessian is known in closed form (test_hvp's hand Hessian)."""
    s = 0.0
    for i in range(u.shape[0] - 1):
        for j in range(u.shape[1] - 1):
            dx = u[i + 1, j] - u[i, j]
            dy = u[i, j + 1] - u[i, j]
            s += dx * dx + dy * dy + c * u[i, j] ** 4
    return s


def periodic_pairs(x, L):
    """A pair energy of particles on a ring of length L, by the minimum-image distance spelled
    with floats' % (smooth away from the jumps), and a piecewise constant factor (x // 0.7)."""
    e = 0.0
    for i in range(x.shape[0]):
        for j in range(i + 1, x.shape[0]):
            d = (x[j] - x[i] + 0.5 * L) % L - 0.5 * L
            e += math.cos(d) * d * d + 0.1 * (x[i] // 0.7) * x[j]
    return e


def row_shifted_products(A, B):
    """A[i, j - 1] at j = 0 is A[i, -1], the last element of row i (not of row i - 1)."""
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            B[i, j] = A[i, j - 1] * A[i, j]


def row_periodic_energy(A):
    """A periodic energy along the rows of A, through negative indices of the second axis."""
    e = 0.0
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            e += A[i, j - 1] * A[i, j] ** 2 + 0.5 * A[i, -1] * A[i, j]
    return e


def smoothed_in_place(u, h):
    """Scales u in place, nonlinearly; returns a value its caller below drops."""
    for i in range(u.shape[0]):
        u[i] = u[i] * h + 0.1 * u[i] * u[i]
    return u[0]


def value_dropped(u, h):
    """Calls a kernel returning a float as a statement: compiled tangents of it did not
    build, the caller passing no array for the value and its tangent."""
    smoothed_in_place(u, h)
    e = 0.0
    for i in range(u.shape[0]):
        e += u[i] * u[i] * u[i]
    return e


def rotated_energy(x):
    """A Givens rotation's cosine and sine from math.hypot, applied to a pair."""
    r = math.hypot(x[0], x[1])
    return x[0] / r * x[2] + x[1] / r * x[3] + r ** 3
