"""Training the smoother weights of AMG cycles with adsrc.amg.

A 2-D Poisson problem (64 x 64 grid, 4096 unknowns), Ruge-Stuben and smoothed aggregation
hierarchies from PyAMG.  adsrc differentiates the whole multigrid cycle (one plain-Python
kernel, see adsrc/amg.py) with respect to one pre- and one post-smoothing weight per level.

1. The gradient of the final residual norm ||b - A x_3|| after three cycles, for V- and
   W-cycles, checked against a central difference along a random direction.
2. Adam on the weights, minimising the mean log residual reduction per cycle on four random
   right-hand sides.  Before and after: the asymptotic convergence factor (residual reduction
   per cycle on A x = 0, TrainableCycle.convergence_factor), and the mean reduction per cycle
   (||r_10|| / ||r_0||)^(1/10) of PyAMG's own ml.solve with the trained weights on three
   right-hand sides the training never saw.

Run:  python examples/amg_training.py      (exit status 1 if a gradient check fails)
"""

import sys
import time

import numpy as np
import pyamg

import adsrc.amg

GRID = (64, 64)
LEVELS = 4
CYCLES = 3              # cycles per loss evaluation
STEPS = 60              # Adam steps
RATE = 0.03             # Adam step size


def hierarchies(A):
    """RS and SA hierarchies, their levels' A in CSR: PyAMG's SOR ignores omega on BSR."""
    np.random.seed(0)       # PyAMG's spectral radius estimates (SA) start from random vectors
    out = {}
    for name, build in (("Ruge-Stuben", pyamg.ruge_stuben_solver),
                        ("smoothed aggregation", pyamg.smoothed_aggregation_solver)):
        ml = build(A, max_levels=LEVELS)
        for level in ml.levels:
            level.A = level.A.tocsr()
        out[name] = ml
    return out


def check_gradient(cycle, weights, b, rng):
    """Print the loss and gradient; return the relative error of <grad, v> against central
    differences of the primal along a random direction v."""
    loss, grad = cycle.value_and_grad(weights, b, cycles=CYCLES)
    v = rng.standard_normal(weights.shape)

    def slope(h):
        return (cycle.residual_norm(weights + h * v, b, cycles=CYCLES)
                - cycle.residual_norm(weights - h * v, b, cycles=CYCLES)) / (2 * h)

    difference = (4 * slope(1e-4) - slope(2e-4)) / 3        # Richardson: error O(h^4)
    error = abs(difference - np.sum(grad * v)) / abs(difference)
    print(f"  {cycle.smoother:6s} {cycle.cycle}-cycle  ||r_{CYCLES}|| = {loss:.6e}   "
          f"central difference check: rel. error {error:.1e}")
    for level, (pre, post) in enumerate(grad):
        print(f"      level {level}: d/d pre = {pre:+.6e}   d/d post = {post:+.6e}")
    return error


def train(cycle, rhs):
    """Adam on the mean over ``rhs`` of log(||r_k|| / ||b||) / k, from the classical weights."""
    weights = cycle.initial_weights()
    first, second = np.zeros_like(weights), np.zeros_like(weights)
    for step in range(1, STEPS + 1):
        grad = np.zeros_like(weights)
        for b in rhs:
            loss, g = cycle.value_and_grad(weights, b, cycles=CYCLES)
            grad += g / (loss * CYCLES * len(rhs))        # d/dw of log(loss) / k
        first = 0.9 * first + 0.1 * grad
        second = 0.999 * second + 0.001 * grad ** 2
        weights = weights - RATE * (first / (1 - 0.9 ** step)) / (
            np.sqrt(second / (1 - 0.999 ** step)) + 1e-12)
    return weights


def pyamg_factor(ml, cycle, weights, rhs, cycles=10):
    """The mean reduction per cycle of PyAMG's own solver with these weights' smoothers."""
    cycle.apply_to(ml, weights)
    factors = []
    for b in rhs:
        residuals = []
        ml.solve(b, x0=np.zeros_like(b), maxiter=cycles, cycle=cycle.cycle, tol=1e-300,
                 residuals=residuals)
        factors.append((residuals[-1] / residuals[0]) ** (1.0 / cycles))
    return float(np.mean(factors))


def factors(ml, cycle, weights, rhs):
    return cycle.convergence_factor(weights), pyamg_factor(ml, cycle, weights, rhs)


def main():
    start = time.perf_counter()
    A = pyamg.gallery.poisson(GRID, format="csr")
    rng = np.random.default_rng(0)
    training = [rng.standard_normal(A.shape[0]) for _ in range(4)]
    unseen = [rng.standard_normal(A.shape[0]) for _ in range(3)]
    mls = hierarchies(A)

    print(f"1. Gradients of ||b - A x_{CYCLES}|| w.r.t. the smoother weights "
          "(initial weights, random b, x0 = 0)")
    worst = 0.0
    for name, ml in mls.items():
        sizes = " -> ".join(str(level.A.shape[0]) for level in ml.levels)
        print(f"{name}: {len(ml.levels)} levels, {sizes} unknowns")
        for cycle_type in ("V", "W"):
            cycle = adsrc.amg.TrainableCycle(ml, smoother="jacobi", cycle=cycle_type)
            worst = max(worst, check_gradient(cycle, cycle.initial_weights(), training[0], rng))

    print(f"\n2. Training ({STEPS} Adam steps on {len(training)} right-hand sides)")
    print(f"  {'':34s} asymptotic factor   PyAMG, {len(unseen)} unseen b")
    print(f"  {'hierarchy':22s} {'smoother':8s} cycle  initial  trained   initial  trained"
          "   time")
    for name, smoother, cycle_type in (("Ruge-Stuben", "jacobi", "V"),
                                       ("Ruge-Stuben", "jacobi", "W"),
                                       ("Ruge-Stuben", "sor", "V"),
                                       ("smoothed aggregation", "jacobi", "V"),
                                       ("smoothed aggregation", "sor", "W")):
        clock = time.perf_counter()
        ml = mls[name]
        cycle = adsrc.amg.TrainableCycle(ml, smoother=smoother, cycle=cycle_type)
        before = factors(ml, cycle, cycle.initial_weights(), unseen)
        weights = train(cycle, training)
        after = factors(ml, cycle, weights, unseen)
        print(f"  {name:22s} {smoother:8s} {cycle_type:5s}  {before[0]:.4f}   {after[0]:.4f}"
              f"    {before[1]:.4f}   {after[1]:.4f}   {time.perf_counter() - clock:.1f} s")
        print("      trained (pre, post) per level: "
              + "  ".join(f"({pre:.3f}, {post:.3f})" for pre, post in weights))

    print(f"\ntotal {time.perf_counter() - start:.1f} s (the first run also compiles the cycle)")
    if worst > 1e-6:
        print(f"FAILED: a gradient disagrees with finite differences ({worst:.1e})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
