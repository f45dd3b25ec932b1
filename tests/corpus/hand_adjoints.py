"""Hand-written adjoints of the corpus kernels: the independent oracle.

Every ``*_adj`` function below was derived by hand, mostly in matrix form
(for example one forward Gauss-Seidel sweep is ``(D + L) x' = b - U x``), so
it does not share the loop structure of the kernel it checks.  Semantics are
those of ``f.adjoint`` in docs/API.md:

* positional arguments are the primal inputs (the initial state); they are
  never modified (the adjoints work on copies and may store every iterate);
* keyword arguments are the output seeds: ``<name>_bar`` holds the adjoint of
  the FINAL value of output array ``name``; ``out_bar`` that of the return
  value;
* the result is a dict ``{argname: adjoint}`` for every float argument
  (arrays and scalars) that enters the outputs smoothly, whether or not a
  case lists it in ``wrt`` (a tolerance, which only steers control flow, is
  left out).  For an
  array the kernel mutates, the entry is the adjoint of its INITIAL value
  (zero if the kernel overwrites it before reading it).  Scalar adjoints are
  Python floats.

``CASES`` lists one ``Case`` per test configuration.
"""

import inspect
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.linalg import solve_triangular

from . import kernels as K
from .problems import (
    diagonal_of,
    gather_csr,
    lower_csr,
    perturb_data,
    poisson2d_csr,
    to_dense,
    upper_csr,
)

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _split(indptr, indices, data):
    """Dense A and its parts D (diagonal), L (strictly lower), U (strictly upper)."""
    a = to_dense(indptr, indices, data)
    return a, np.diag(np.diag(a)), np.tril(a, -1), np.triu(a, 1)


def _lower_solve_t(m, rhs):
    """m^-T rhs for lower-triangular m."""
    return solve_triangular(m.T, rhs, lower=False)


def _upper_solve_t(m, rhs):
    """m^-T rhs for upper-triangular m."""
    return solve_triangular(m.T, rhs, lower=True)


# ---------------------------------------------------------------------------
# Jacobi
# ---------------------------------------------------------------------------


def jacobi_damped_adj(indptr, indices, data, dinv, x, b, alpha, iters, *, x_bar):
    # x_{k+1} = x_k + alpha * dinv * r_k,  r_k = b - A x_k
    a = to_dense(indptr, indices, data)
    xs = [np.array(x, dtype=float)]
    rs = []
    for _ in range(iters):
        r = b - a @ xs[-1]
        rs.append(r)
        xs.append(xs[-1] + alpha * dinv * r)
    xb = np.array(x_bar, dtype=float)
    bb = np.zeros_like(xb)
    dinvb = np.zeros_like(xb)
    ab = np.zeros_like(a)
    alphab = 0.0
    for k in reversed(range(iters)):
        r, xk = rs[k], xs[k]
        alphab += float(np.sum(xb * dinv * r))
        dinvb += alpha * xb * r
        g = alpha * dinv * xb  # adjoint of r_k
        bb += g
        ab -= np.outer(g, xk)
        xb = xb - a.T @ g
    return {
        "data": gather_csr(ab, indptr, indices),
        "dinv": dinvb,
        "x": xb,
        "b": bb,
        "alpha": alphab,
    }


def jacobi_csr_adj(indptr, indices, data, x, b, omega, iters, *, x_bar):
    # x' = (1 - w) x + w (b - O x) / d,  O = A - D
    a, dm, _, _ = _split(indptr, indices, data)
    d = np.diag(dm)
    o = a - dm
    xs = [np.array(x, dtype=float)]
    for _ in range(iters):
        xs.append((1.0 - omega) * xs[-1] + omega * (b - o @ xs[-1]) / d)
    xb = np.array(x_bar, dtype=float)
    bb = np.zeros_like(xb)
    ab = np.zeros_like(a)
    omegab = 0.0
    for k in reversed(range(iters)):
        xk = xs[k]
        c = b - o @ xk
        g = omega * xb / d  # adjoint of c
        omegab += float(xb @ (c / d - xk))
        bb += g
        ab -= np.outer(g, xk) * (o != 0)  # off-diagonal entries
        ab[np.diag_indices_from(ab)] -= g * c / d  # diagonal entries
        xb = (1.0 - omega) * xb - o.T @ g
    return {"data": gather_csr(ab, indptr, indices), "x": xb, "b": bb, "omega": omegab}


# ---------------------------------------------------------------------------
# Gauss-Seidel and SOR
# ---------------------------------------------------------------------------


def _gs_forward_step(parts, x, b):
    _, dm, lo, up = parts
    return solve_triangular(dm + lo, b - up @ x, lower=True)


def _gs_backward_step(parts, x, b):
    _, dm, lo, up = parts
    return solve_triangular(dm + up, b - lo @ x, lower=False)


def _gs_forward_step_adj(parts, xold, xnew, xb):
    """(D + L) x' = b - U x.  Returns (adjoint of x, of b, of A)."""
    _, dm, lo, up = parts
    lam = _lower_solve_t(dm + lo, xb)
    abar = -np.tril(np.outer(lam, xnew)) - np.triu(np.outer(lam, xold), 1)
    return -up.T @ lam, lam, abar


def _gs_backward_step_adj(parts, xold, xnew, xb):
    """(D + U) x' = b - L x.  Returns (adjoint of x, of b, of A)."""
    _, dm, lo, up = parts
    lam = _upper_solve_t(dm + up, xb)
    abar = -np.triu(np.outer(lam, xnew)) - np.tril(np.outer(lam, xold), -1)
    return -lo.T @ lam, lam, abar


def _gs_adj(steps, indptr, indices, data, x, b, x_bar):
    """Adjoint of a sequence of Gauss-Seidel half sweeps, given as a list of
    (forward_step, step_adjoint) pairs."""
    parts = _split(indptr, indices, data)
    xs = [np.array(x, dtype=float)]
    for step, _ in steps:
        xs.append(step(parts, xs[-1], b))
    xb = np.array(x_bar, dtype=float)
    bb = np.zeros_like(xb)
    ab = np.zeros_like(parts[0])
    for k in reversed(range(len(steps))):
        xb, db, da = steps[k][1](parts, xs[k], xs[k + 1], xb)
        bb += db
        ab += da
    return {"data": gather_csr(ab, indptr, indices), "x": xb, "b": bb}


_FWD = (_gs_forward_step, _gs_forward_step_adj)
_BWD = (_gs_backward_step, _gs_backward_step_adj)


def gauss_seidel_adj(indptr, indices, data, x, b, sweeps, *, x_bar):
    return _gs_adj([_FWD] * sweeps, indptr, indices, data, x, b, x_bar)


def gauss_seidel_backward_adj(indptr, indices, data, x, b, sweeps, *, x_bar):
    return _gs_adj([_BWD] * sweeps, indptr, indices, data, x, b, x_bar)


def gauss_seidel_symmetric_adj(indptr, indices, data, x, b, sweeps, *, x_bar):
    return _gs_adj([_FWD, _BWD] * sweeps, indptr, indices, data, x, b, x_bar)


def sor_adj(indptr, indices, data, x, b, omega, sweeps, *, x_bar):
    # (D + w L) x' = (1 - w) D x + w b - w U x
    _, dm, lo, up = _split(indptr, indices, data)
    m = dm + omega * lo
    xs = [np.array(x, dtype=float)]
    for _ in range(sweeps):
        rhs = (1.0 - omega) * dm @ xs[-1] + omega * (b - up @ xs[-1])
        xs.append(solve_triangular(m, rhs, lower=True))
    xb = np.array(x_bar, dtype=float)
    bb = np.zeros_like(xb)
    ab = np.zeros_like(dm)
    omegab = 0.0
    for k in reversed(range(sweeps)):
        xo, xn = xs[k], xs[k + 1]
        lam = _lower_solve_t(m, xb)
        omegab += float(lam @ (b - lo @ xn - dm @ xo - up @ xo))
        bb += omega * lam
        ab[np.diag_indices_from(ab)] += lam * (-xn + (1.0 - omega) * xo)
        ab += -omega * np.tril(np.outer(lam, xn), -1) - omega * np.triu(np.outer(lam, xo), 1)
        xb = (1.0 - omega) * (dm @ lam) - omega * (up.T @ lam)
    return {"data": gather_csr(ab, indptr, indices), "x": xb, "b": bb, "omega": omegab}


# ---------------------------------------------------------------------------
# Sparse products and triangular solves
# ---------------------------------------------------------------------------


def spmv_adj(indptr, indices, data, x, y, *, y_bar):
    # y = A x
    a = to_dense(indptr, indices, data)
    return {
        "data": gather_csr(np.outer(y_bar, x), indptr, indices),
        "x": a.T @ y_bar,
        "y": np.zeros_like(y_bar),
    }


def spmv_transpose_adj(indptr, indices, data, x, y, *, y_bar):
    # y = A^T x,  y_j = sum_i a_ij x_i
    a = to_dense(indptr, indices, data)
    return {
        "data": gather_csr(np.outer(x, y_bar), indptr, indices),
        "x": a @ y_bar,
        "y": np.zeros_like(y_bar),
    }


def lower_solve_adj(indptr, indices, data, x, *, x_bar):
    # L x' = x0 with L = tril(A)
    lm = np.tril(to_dense(indptr, indices, data))
    xn = solve_triangular(lm, x, lower=True)
    lam = _lower_solve_t(lm, x_bar)
    return {"data": gather_csr(-np.tril(np.outer(lam, xn)), indptr, indices), "x": lam}


def upper_solve_adj(indptr, indices, data, x, *, x_bar):
    # U x' = x0 with U = triu(A)
    um = np.triu(to_dense(indptr, indices, data))
    xn = solve_triangular(um, x, lower=False)
    lam = _upper_solve_t(um, x_bar)
    return {"data": gather_csr(-np.triu(np.outer(lam, xn)), indptr, indices), "x": lam}


# ---------------------------------------------------------------------------
# Dense stencils
# ---------------------------------------------------------------------------


def _neighbours(v):
    return v[:-2, 1:-1] + v[2:, 1:-1] + v[1:-1, :-2] + v[1:-1, 2:]


def jacobi2d_adj(u, f, omega, iters, *, u_bar):
    # interior: u' = (1 - w) u + w/4 (f + N u); boundary: u' = u
    us = [np.array(u, dtype=float)]
    for _ in range(iters):
        new = us[-1].copy()
        new[1:-1, 1:-1] = (1.0 - omega) * us[-1][1:-1, 1:-1] + omega * 0.25 * (
            f[1:-1, 1:-1] + _neighbours(us[-1])
        )
        us.append(new)
    ub = np.array(u_bar, dtype=float)
    fb = np.zeros_like(ub)
    omegab = 0.0
    for k in reversed(range(iters)):
        old = us[k]
        gi = ub[1:-1, 1:-1].copy()  # adjoint of the new interior values
        omegab += float(np.sum(gi * (0.25 * (f[1:-1, 1:-1] + _neighbours(old)) - old[1:-1, 1:-1])))
        prev = ub.copy()  # boundary passes through unchanged
        prev[1:-1, 1:-1] = (1.0 - omega) * gi
        q = 0.25 * omega * gi
        fb[1:-1, 1:-1] += q
        prev[:-2, 1:-1] += q
        prev[2:, 1:-1] += q
        prev[1:-1, :-2] += q
        prev[1:-1, 2:] += q
        ub = prev
    return {"u": ub, "f": fb, "omega": omegab}


def smooth1d_adj(v, theta, iters, *, v_bar):
    # interior: v' = (1 - t) v + t/2 (v_left + v_right); ends: v' = v
    vs = [np.array(v, dtype=float)]
    for _ in range(iters):
        new = vs[-1].copy()
        w = vs[-1]
        new[1:-1] = (1.0 - theta) * w[1:-1] + 0.5 * theta * (w[:-2] + w[2:])
        vs.append(new)
    vb = np.array(v_bar, dtype=float)
    thetab = 0.0
    for k in reversed(range(iters)):
        w = vs[k]
        gi = vb[1:-1].copy()
        thetab += float(np.sum(gi * (0.5 * (w[:-2] + w[2:]) - w[1:-1])))
        prev = vb.copy()
        prev[1:-1] = (1.0 - theta) * gi
        prev[:-2] += 0.5 * theta * gi
        prev[2:] += 0.5 * theta * gi
        vb = prev
    return {"v": vb, "theta": thetab}


# ---------------------------------------------------------------------------
# Scalar iteration, branches, reductions
# ---------------------------------------------------------------------------


def newton_cubic_adj(a, c, x0, tol, maxit, *, out_bar=1.0):
    # x_{k+1} = x_k - g(x_k)/g'(x_k),  g = x^3 + a x - c,  g' = 3x^2 + a
    # d x_{k+1}/d x_k = g g''/g'^2 (g'' = 6x),  d/da = -x/g' + g/g'^2,  d/dc = 1/g'
    xs = [x0]
    x, dx, it = x0, 2.0 * tol + 1.0, 0
    while abs(dx) > tol:  # the same control flow as the primal
        dx = (x**3 + a * x - c) / (3.0 * x * x + a)
        x = x - dx
        xs.append(x)
        it += 1
        if it >= maxit:
            break
    xb, ab, cb = float(out_bar), 0.0, 0.0
    for k in reversed(range(len(xs) - 1)):
        x = xs[k]
        g = x**3 + a * x - c
        gp = 3.0 * x * x + a
        ab += xb * (-x / gp + g / gp**2)
        cb += xb / gp
        xb = xb * g * 6.0 * x / gp**2
    # tol only steers the control flow: it is no differentiable input
    return {"a": ab, "c": cb, "x0": xb}


def _branchy_parts(xi, a):
    """Value and partials (dy/dx, dy/da) of one element of ``branchy``."""
    if xi > 0.5:
        s, e = np.sqrt(xi), np.exp(-a * xi)
        y = s * e + np.log1p(xi)
        return y, e * (0.5 / s - a * s) + 1.0 / (1.0 + xi), -xi * s * e
    if xi > -0.5:
        y = np.sin(a * xi) * np.cos(xi) + np.tanh(xi)
        dx = a * np.cos(a * xi) * np.cos(xi) - np.sin(a * xi) * np.sin(xi) + 1.0 - np.tanh(xi) ** 2
        return y, dx, xi * np.cos(a * xi) * np.cos(xi)
    # xi <= -0.5: |x|^1.5 + min(x, -a) * max(x^2, a)
    mn, dmn_dx, dmn_da = (xi, 1.0, 0.0) if xi < -a else (-a, 0.0, -1.0)
    mx, dmx_dx, dmx_da = (xi * xi, 2.0 * xi, 0.0) if xi * xi > a else (a, 0.0, 1.0)
    y = abs(xi) ** 1.5 + mn * mx
    dx = -1.5 * abs(xi) ** 0.5 + dmn_dx * mx + mn * dmx_dx
    return y, dx, dmn_da * mx + mn * dmx_da


def branchy_adj(x, y, a, *, y_bar, out_bar=1.0):
    # s = sum y_i^2, so the total adjoint of y_i is y_bar_i + 2 y_i out_bar
    xb = np.zeros(len(x))
    ab = 0.0
    for i, xi in enumerate(x):
        yi, dydx, dyda = _branchy_parts(float(xi), a)
        g = y_bar[i] + 2.0 * yi * out_bar
        xb[i] = g * dydx
        ab += g * dyda
    return {"x": xb, "y": np.zeros(len(y)), "a": float(ab)}


def residual_loss_adj(indptr, indices, data, x, b, lam, *, out_bar=1.0):
    # L = 0.5 r.r + lam x.x,  r = A x - b
    a = to_dense(indptr, indices, data)
    r = a @ x - b
    return {
        "data": gather_csr(out_bar * np.outer(r, x), indptr, indices),
        "x": out_bar * (a.T @ r + 2.0 * lam * x),
        "b": -out_bar * r,
        "lam": float(out_bar * (x @ x)),
    }


# ---------------------------------------------------------------------------
# Multigrid V-cycle on the 1-D model operator A = tridiag(-1, 2.5, -1)
# ---------------------------------------------------------------------------


def _model_operator(n):
    return 2.5 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)


def _mg_smooth_np(x, b, w):
    return x + w * (b - _model_operator(len(x)) @ x) / 2.5


def _mg_smooth_adj_np(x, b, w, xb):
    """x' = x + w/2.5 (b - A x).  Returns (adjoint of x, of b, of w)."""
    a = _model_operator(len(x))
    return xb - (w / 2.5) * (a.T @ xb), (w / 2.5) * xb, float(xb @ (b - a @ x)) / 2.5


def mg_smooth_adj(x, b, w, *, x_bar):
    xb, bb, wb = _mg_smooth_adj_np(np.asarray(x, float), b, w, np.asarray(x_bar, float))
    return {"x": xb, "b": bb, "w": wb}


def mg_residual_adj(x, b, r, *, r_bar):
    # r = b - A x (r overwritten)
    a = _model_operator(len(x))
    return {"x": -a.T @ r_bar, "b": np.array(r_bar, dtype=float), "r": np.zeros(len(r))}


def _restrict(v):
    return 0.5 * (v[0::2] + v[1::2])


def _vcycle_np(level, nlevels, x, b, w):
    """NumPy forward of ``vcycle``; returns the new x (x is not modified)."""
    x = np.array(x, dtype=float)
    if level == nlevels - 1:
        x[0] = b[0] / 2.5
        return x
    x1 = _mg_smooth_np(x, b, w)
    rc = _restrict(b - _model_operator(len(x)) @ x1)
    ec = _vcycle_np(level + 1, nlevels, np.zeros(len(rc)), rc, w)
    x2 = x1.copy()
    x2[0::2] += ec
    x2[1::2] += ec
    return _mg_smooth_np(x2, b, w)


def _vcycle_adj_np(level, nlevels, x0, b, w, xb):
    """Adjoint of one V-cycle.  Returns (adjoint of x0, of b, of w)."""
    n = len(x0)
    if level == nlevels - 1:
        x0b = np.array(xb, dtype=float)
        bb = np.zeros(n)
        bb[0] = x0b[0] / 2.5
        x0b[0] = 0.0
        return x0b, bb, 0.0
    a = _model_operator(n)
    # forward, keeping what the reverse sweep needs
    x1 = _mg_smooth_np(x0, b, w)
    rc = _restrict(b - a @ x1)
    ec = _vcycle_np(level + 1, nlevels, np.zeros(len(rc)), rc, w)
    x2 = x1.copy()
    x2[0::2] += ec
    x2[1::2] += ec
    # reverse
    x2b, bb, wb = _mg_smooth_adj_np(x2, b, w, xb)  # post-smoothing
    ecb = x2b[0::2] + x2b[1::2]  # prolongation P = [1; 1] per pair
    _, rcb, wb2 = _vcycle_adj_np(level + 1, nlevels, np.zeros(len(rc)), rc, w, ecb)
    rb = np.repeat(0.5 * rcb, 2)  # restriction R = P^T / 2
    bb = bb + rb
    x1b = x2b - a.T @ rb  # r = b - A x1
    x0b, bb3, wb3 = _mg_smooth_adj_np(x0, b, w, x1b)  # pre-smoothing
    return x0b, bb + bb3, wb + wb2 + wb3


def vcycle_adj(level, nlevels, x, b, w, *, x_bar):
    xb, bb, wb = _vcycle_adj_np(level, nlevels, np.asarray(x, float), b, w, np.asarray(x_bar, float))
    return {"x": xb, "b": bb, "w": float(wb)}


# ---------------------------------------------------------------------------
# Problem set-ups
# ---------------------------------------------------------------------------

M_GRID = 4  # CSR problems: 2-D Poisson on a 4 x 4 grid, n = 16


def _poisson(rng, int_dtype, m=M_GRID):
    indptr, indices, data = poisson2d_csr(m, int_dtype)
    return indptr, indices, perturb_data(rng, indptr, indices, data)


def _jacobi_damped_args(rng, int_dtype):
    indptr, indices, data = _poisson(rng, int_dtype)
    n = len(indptr) - 1
    dinv = 1.0 / diagonal_of(indptr, indices, data) * (1.0 + 0.1 * rng.uniform(-1, 1, n))
    x, b = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    return indptr, indices, data, dinv, x, b, float(rng.uniform(0.6, 0.9)), 3


def _jacobi_csr_args(rng, int_dtype):
    indptr, indices, data = _poisson(rng, int_dtype)
    n = len(indptr) - 1
    x, b = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    return indptr, indices, data, x, b, float(rng.uniform(0.6, 0.9)), 3


def _gs_args(rng, int_dtype):
    indptr, indices, data = _poisson(rng, int_dtype)
    n = len(indptr) - 1
    return indptr, indices, data, rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), 3


def _gs_sym_args(rng, int_dtype):
    return _gs_args(rng, int_dtype)[:5] + (2,)


def _sor_args(rng, int_dtype):
    indptr, indices, data, x, b, _ = _gs_args(rng, int_dtype)
    return indptr, indices, data, x, b, float(rng.uniform(1.1, 1.5)), 3


def _spmv_args(rng, int_dtype):
    indptr, indices, data = _poisson(rng, int_dtype)
    n = len(indptr) - 1
    return indptr, indices, data, rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)


def _triangular_args(builder):
    def make(rng, int_dtype):
        indptr, indices, data = builder(M_GRID, int_dtype)
        data = perturb_data(rng, indptr, indices, data)
        return indptr, indices, data, rng.uniform(-1, 1, len(indptr) - 1)

    return make


def _grid2d_args(rng, int_dtype):
    u = rng.uniform(-1, 1, (5, 6))  # non-square on purpose
    f = rng.uniform(-1, 1, (5, 6))
    return u, f, float(rng.uniform(0.6, 0.9)), 3


def _smooth1d_args(rng, int_dtype):
    return rng.uniform(-1, 1, 9), float(rng.uniform(0.4, 0.8)), 3


def _newton_args(rng, int_dtype):
    return float(rng.uniform(0.5, 2.0)), float(rng.uniform(-3.0, 3.0)), 1.0, 1e-13, 50


def _branchy_args(a_low, a_high):
    """x values kept at least 0.03 away from every switching point of
    ``branchy`` (branch thresholds and the kinks of minimum/maximum), so that
    finite differences see a smooth function; includes the midpoint of every
    smooth piece of the last branch that is wide enough."""

    def make(rng, int_dtype):
        a = float(rng.uniform(a_low, a_high))
        switches = np.array([-0.5, 0.5, -a, -np.sqrt(a)])
        margin = 0.03
        cand = rng.uniform(-2.5, 2.5, 64)
        far = np.min(np.abs(cand[:, None] - switches[None, :]), axis=1) > margin
        pts = sorted([-2.5] + [p for p in switches if p <= -0.5])
        mids = [0.5 * (lo + hi) for lo, hi in zip(pts[:-1], pts[1:]) if hi - lo > 4 * margin]
        x = np.concatenate([cand[far][:12], mids])
        return x, rng.uniform(-1, 1, len(x)), a

    return make


def _residual_loss_args(rng, int_dtype):
    indptr, indices, data = _poisson(rng, int_dtype)
    n = len(indptr) - 1
    return indptr, indices, data, rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), 0.3


def _mg_smooth_args(rng, int_dtype):
    return rng.uniform(-1, 1, 8), rng.uniform(-1, 1, 8), float(rng.uniform(0.6, 0.9))


def _mg_residual_args(rng, int_dtype):
    return rng.uniform(-1, 1, 8), rng.uniform(-1, 1, 8), rng.uniform(-1, 1, 8)


def _vcycle_args(rng, int_dtype):
    nlevels = 4  # 8 -> 4 -> 2 -> 1 points
    n = 2 ** (nlevels - 1)
    return 0, nlevels, rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), float(rng.uniform(0.6, 0.9))


# ---------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    kernel: Callable
    make_args: Callable  # (rng, int_dtype) -> tuple of positional arguments
    wrt: tuple
    outputs: tuple  # argument names of output arrays and/or "return"
    hand_adjoint: Callable  # (*args, **bars) -> {argname: adjoint}
    uses_indices: bool = False  # CSR kernel: run with int32 and int64 indices

    @property
    def argnames(self):
        return tuple(inspect.signature(self.kernel).parameters)

    def arg_index(self, name):
        return self.argnames.index(name)

    def make_bars(self, rng, args):
        """Random output seeds: ``{"x_bar": array, "out_bar": float, ...}``."""
        bars = {}
        for name in self.outputs:
            if name == "return":
                bars["out_bar"] = float(rng.standard_normal())
            else:
                bars[name + "_bar"] = rng.standard_normal(np.shape(args[self.arg_index(name)]))
        return bars

    def hand_all(self, args, bars):
        """Hand adjoints of every float argument, as a dict."""
        return self.hand_adjoint(*args, **bars)

    def hand(self, args, bars):
        """Hand adjoints in ``wrt`` order (what ``f.adjoint`` returns)."""
        allg = self.hand_all(args, bars)
        return tuple(allg[name] for name in self.wrt)


CASES = [
    Case("jacobi_damped", K.jacobi_damped, _jacobi_damped_args,
         ("data", "dinv", "x", "b", "alpha"), ("x",), jacobi_damped_adj, True),
    Case("jacobi_damped[alpha]", K.jacobi_damped, _jacobi_damped_args,
         ("alpha",), ("x",), jacobi_damped_adj, True),
    Case("jacobi_csr", K.jacobi_csr, _jacobi_csr_args,
         ("data", "x", "b", "omega"), ("x",), jacobi_csr_adj, True),
    Case("gauss_seidel", K.gauss_seidel, _gs_args,
         ("data", "x", "b"), ("x",), gauss_seidel_adj, True),
    Case("gauss_seidel[b]", K.gauss_seidel, _gs_args,
         ("b",), ("x",), gauss_seidel_adj, True),
    Case("gauss_seidel_backward", K.gauss_seidel_backward, _gs_args,
         ("data", "x", "b"), ("x",), gauss_seidel_backward_adj, True),
    Case("gauss_seidel_symmetric", K.gauss_seidel_symmetric, _gs_sym_args,
         ("data", "x", "b"), ("x",), gauss_seidel_symmetric_adj, True),
    Case("sor", K.sor, _sor_args,
         ("data", "x", "b", "omega"), ("x",), sor_adj, True),
    Case("spmv", K.spmv, _spmv_args,
         ("data", "x", "y"), ("y",), spmv_adj, True),
    Case("spmv_transpose", K.spmv_transpose, _spmv_args,
         ("data", "x", "y"), ("y",), spmv_transpose_adj, True),
    Case("lower_solve", K.lower_solve, _triangular_args(lower_csr),
         ("data", "x"), ("x",), lower_solve_adj, True),
    Case("upper_solve", K.upper_solve, _triangular_args(upper_csr),
         ("data", "x"), ("x",), upper_solve_adj, True),
    Case("jacobi2d", K.jacobi2d, _grid2d_args,
         ("u", "f", "omega"), ("u",), jacobi2d_adj),
    Case("jacobi2d_slices", K.jacobi2d_slices, _grid2d_args,
         ("u", "f", "omega"), ("u",), jacobi2d_adj),
    Case("smooth1d", K.smooth1d, _smooth1d_args,
         ("v", "theta"), ("v",), smooth1d_adj),
    Case("newton_cubic", K.newton_cubic, _newton_args,
         ("a", "c"), ("return",), newton_cubic_adj),
    Case("branchy", K.branchy, _branchy_args(0.7, 0.8),
         ("x", "y", "a"), ("y", "return"), branchy_adj),
    Case("branchy[a>1]", K.branchy, _branchy_args(1.3, 1.5),
         ("x", "y", "a"), ("y", "return"), branchy_adj),
    Case("residual_loss", K.residual_loss, _residual_loss_args,
         ("data", "x", "b", "lam"), ("return",), residual_loss_adj, True),
    Case("mg_smooth", K.mg_smooth, _mg_smooth_args,
         ("x", "b", "w"), ("x",), mg_smooth_adj),
    Case("mg_residual", K.mg_residual, _mg_residual_args,
         ("x", "b"), ("r",), mg_residual_adj),
    Case("vcycle", K.vcycle, _vcycle_args,
         ("x", "b", "w"), ("x",), vcycle_adj),
]

CASES_BY_NAME = {c.name: c for c in CASES}
assert len(CASES_BY_NAME) == len(CASES), "case names must be unique"
