"""Newton-CG with adsrc Hessian-vector products: a few thousand unknowns, no Hessian matrix.

The energy of a discretised 1-D membrane under a load, with a length term (nonlinear) and a
quadratic spring term, written as a plain loop kernel.  adsrc differentiates it twice: the
gradient by reverse mode, and H v by tangent over adjoint, as a SciPy ``LinearOperator`` whose
point moves with ``update(x)`` (nothing is generated or compiled again).  SciPy's Newton-CG and
trust-krylov take them directly.

    python examples/newton_cg.py
"""

import math
import time

import numpy as np
import scipy.optimize as opt

import adsrc


def energy(u, load, h, stiffness):
    """Length of the graph of u, plus springs to zero, minus the work of the load."""
    n = u.shape[0]
    e = 0.0
    for i in range(n - 1):
        slope = (u[i + 1] - u[i]) / h
        e += h * math.sqrt(1.0 + slope * slope)
    for i in range(n):
        e += h * (0.5 * stiffness * u[i] * u[i] - load[i] * u[i])
    return e


def main(n=4000):
    h = 1.0 / n
    grid = np.linspace(0.0, 1.0, n)
    load = 3.0 * np.sin(3.0 * np.pi * grid) + 1.0
    stiffness = 4.0
    value_and_grad = adsrc.value_and_grad(energy, wrt="u")
    u0 = np.zeros(n)
    hessian = adsrc.hessian_operator(energy, u0, load, h, stiffness, wrt="u")

    def fun(u):
        value, gradient = value_and_grad(u.copy(), load, h, stiffness)
        return value, gradient

    def hessp(u, p):
        return hessian.update(u).matvec(p)

    for method in ("Newton-CG", "trust-krylov"):
        start = time.perf_counter()
        result = opt.minimize(fun, u0, jac=True, hessp=hessp, method=method,
                              options={"maxiter": 200} | ({"xtol": 1e-10} if method == "Newton-CG"
                                                           else {"gtol": 1e-9}))
        seconds = time.perf_counter() - start
        gradient = fun(result.x)[1]
        print(f"{method:13s} n = {n}: {result.nit} iterations, {result.nfev} energies, "
              f"{result.nhev} Hessian-vector products, |grad| = {np.linalg.norm(gradient):.2e}, "
              f"energy {result.fun:.10f}, {seconds:.2f} s")
        assert np.linalg.norm(gradient) < 1e-6, "did not converge"

    # the same problem by L-BFGS with adsrc gradients, for comparison: without second-order
    # information it needs thousands of iterations here (the Hessian's condition number grows
    # as n^2), so it is given a budget and its distance from Newton's minimiser is reported
    start = time.perf_counter()
    lbfgs = opt.minimize(fun, u0, jac=True, method="L-BFGS-B",
                         options={"maxiter": 2000, "gtol": 1e-9, "ftol": 1e-15})
    outcome = "converged" if lbfgs.success else f"not converged ({lbfgs.message})"
    print(f"L-BFGS-B      n = {n}: {lbfgs.nit} iterations, {outcome}, |grad| = "
          f"{np.linalg.norm(fun(lbfgs.x)[1]):.2e}, {time.perf_counter() - start:.2f} s; "
          f"max |u_lbfgs - u_newton| = {np.max(np.abs(result.x - lbfgs.x)):.1e}")

if __name__ == "__main__":
    main()
