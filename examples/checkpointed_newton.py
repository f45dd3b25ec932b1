"""Newton-Krylov through an iterative solver run to a tolerance, with checkpoints, no tape.

Calibrate the conductivities ``kappa = exp(theta)`` of a 1-D diffusion problem
``-(kappa u')' = f`` from an observed ``u``.  The state is computed the way a solver code does
it: SOR sweeps, in place, until the residual is small (a hundred or so).  The loop is marked
with ``adsrc.checkpointed``, so that its adjoint keeps 20 checkpoints of ``u`` instead of a tape
of every sweep, and its body ends with ``if ...: break``, so it runs to the tolerance.  SciPy's
trust-region Newton-Krylov method (trust-krylov) then gets the gradient (reverse mode) and
Hessian-vector products (forward over reverse, through the same checkpointed loop) of the
misfit.

    python examples/checkpointed_newton.py
"""

import math
import time

import numpy as np
import scipy.optimize as opt

import adsrc


def sweep(theta, f, h, omega, u, r):
    """One SOR sweep (relaxation ``omega``) of -(kappa u')' = f, kappa = exp(theta) on the
    n + 1 cell faces (positive whatever theta is) and u = 0 at both ends, then the residual r
    of the new u."""
    n = len(u)
    for i in range(n):
        west, east = math.exp(theta[i]), math.exp(theta[i + 1])
        acc = h * h * f[i]
        if i > 0:
            acc += west * u[i - 1]
        if i < n - 1:
            acc += east * u[i + 1]
        u[i] = (1.0 - omega) * u[i] + omega * acc / (west + east)
    for i in range(n):
        west, east = math.exp(theta[i]), math.exp(theta[i + 1])
        acc = h * h * f[i] - (west + east) * u[i]
        if i > 0:
            acc += west * u[i - 1]
        if i < n - 1:
            acc += east * u[i + 1]
        r[i] = acc


def misfit(theta, f, h, u_observed, u, tol, max_sweeps):
    """Half the squared misfit of the solved u to the observed one, plus a smoothing term."""
    r = np.zeros(len(u))
    omega = 2.0 / (1.0 + np.sin(np.pi * h))       # SOR's best relaxation for -u'' = f
    for it in adsrc.checkpointed(range(max_sweeps), snapshots=20):
        sweep(theta, f, h, omega, u, r)
        if np.dot(r, r) <= tol * tol:
            break
    e = 0.0
    for i in range(len(u)):
        e += 0.5 * (u[i] - u_observed[i]) ** 2
    for i in range(len(theta) - 1):
        e += 1e-6 * (theta[i + 1] - theta[i]) ** 2
    return e


def main(n=20):
    h = 1.0 / (n + 1)
    x = np.linspace(0.0, 1.0, n + 2)
    f = np.ones(n)
    tol, max_sweeps = 1e-12, 5000
    u_observed = np.zeros(n)        # the u of the true conductivities
    misfit(np.log(1.0 + 0.5 * np.sin(2.0 * np.pi * x[:-1])), f, h, u_observed, u_observed, tol,
           max_sweeps)
    args = (f, h, u_observed)

    f_theta = adsrc.differentiate(misfit, wrt="theta")
    theta0 = np.zeros(n + 1)
    hessian = adsrc.hessian_operator(misfit, theta0, *args, np.zeros(n), tol, max_sweeps,
                                     wrt="theta")

    def fun(theta):
        return adsrc.value_and_grad(f_theta, wrt="theta")(theta.copy(), *args, np.zeros(n), tol,
                                                          max_sweeps)

    def hessp(theta, p):
        return hessian.update(theta).matvec(p)

    start = time.perf_counter()
    result = opt.minimize(fun, theta0, jac=True, hessp=hessp, method="trust-krylov",
                          options={"maxiter": 50, "gtol": 1e-10})
    seconds = time.perf_counter() - start
    f_theta.adjoint(result.x.copy(), *args, np.zeros(n), tol, max_sweeps)
    stats = f_theta.adjoint.last_stats
    print(f"trust-krylov, {n + 1} conductivities: {result.nit} iterations, {result.nfev} "
          f"misfits, {result.nhev} Hessian-vector products, misfit {result.fun:.3e} (from "
          f"{fun(theta0)[0]:.3e}), {seconds:.1f} s")
    print(f"the solver ran {stats.steps} sweeps ({stats.stopped_by}); the adjoint re-ran "
          f"{stats.forward_steps - stats.steps} of them from at most {stats.peak_snapshots} "
          f"checkpoints, {stats.peak_bytes / 1024:.0f} KiB with the step tapes, where taping "
          f"every sweep would hold about {stats.tape_floats * 8 / 1024:.0f} KiB")
    assert result.fun < 1e-3 * fun(theta0)[0], "the misfit did not fall"


if __name__ == "__main__":
    main()
