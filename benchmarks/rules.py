"""Library calls with derivative rules: the gradient through a sparse solve against the solve
alone; writes benchmarks/RULES.md.

    python benchmarks/rules.py [--sides 100,316] [--output benchmarks/RULES.md]

The kernel solves the 2-D Poisson system of a side x side grid (side = 316: 10^5 unknowns) with
``adsrc.sparse.spsolve`` and returns ``f^T u``; its gradient with respect to the matrix values
and the right-hand side (``adsrc.value_and_grad``: the forward solve, then the adjoint's
transposed solve with the same factorisation) is timed against SciPy's ``splu`` + ``solve``
alone, which is the least any solve costs.  The issue's target: at most 1.5x.  The gradient is
checked against the closed form ``data_bar[k] = -u[i] u[j]`` for the stored entry ``(i, j)``,
``f_bar = 2 u`` (A symmetric).  The same is measured for ``adsrc.sparse.cg`` (to 1e-10) against
SciPy's ``cg``.
"""

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

import numpy as np
import scipy
import scipy.sparse as sp
import scipy.sparse.linalg

import adsrc
from adsrc.sparse import cg, spsolve

TOLERANCE = 1e-10


def compliance(data, indices, indptr, f, u):
    u[:] = spsolve(data, indices, indptr, f)
    return np.dot(f, u)


def cg_compliance(data, indices, indptr, f, u):
    u[:] = cg(data, indices, indptr, f, 1e-10)
    return np.dot(f, u)


def poisson(side):
    one_d = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(side, side))
    matrix = (sp.kron(sp.identity(side), one_d) + sp.kron(one_d, sp.identity(side))).tocsr()
    matrix.sort_indices()
    return matrix


def median_time(call, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(side, repeats):
    matrix = poisson(side)
    n = matrix.shape[0]
    data, indices, indptr = matrix.data, matrix.indices, matrix.indptr
    f = np.random.default_rng(0).uniform(0.5, 1.5, n)
    rows = np.repeat(np.arange(n), np.diff(indptr))
    results = []
    for label, kernel, alone in (
            ("spsolve", compliance,
             lambda: scipy.sparse.linalg.splu(matrix.tocsc()).solve(f)),
            ("cg", cg_compliance,
             lambda: scipy.sparse.linalg.cg(matrix, f, rtol=TOLERANCE, atol=0.0)[0])):
        gradient = adsrc.value_and_grad(kernel, wrt=("data", "f"))
        u = np.zeros(n)
        _, (data_bar, f_bar) = gradient(data, indices, indptr, f, u)      # warm-up, checked
        error = max(np.max(np.abs(data_bar + u[rows] * u[indices])) / np.max(u) ** 2,
                    np.max(np.abs(f_bar - 2 * u)) / np.max(np.abs(u)))
        solve_time = median_time(alone, repeats)
        # new matrix values for every call: adsrc reuses the latest factorisation of an equal
        # matrix, which a training loop (values change at every step) never sees
        values = iter([data * (1.0 + 1e-9 * (k + 1)) for k in range(repeats)])
        gradient_time = median_time(
            lambda: gradient(next(values), indices, indptr, f, np.zeros(n)), repeats)
        results.append((label, n, matrix.nnz, solve_time, gradient_time, error))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", default="100,316")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "RULES.md"))
    options = parser.parse_args()
    rows = []
    for side in (int(text) for text in options.sides.split(",")):
        for label, n, nnz, solve_time, gradient_time, error in measure(side, options.repeats):
            rows.append(f"| {label} | {side}x{side} | {n} | {nnz} | {solve_time * 1e3:.1f} | "
                        f"{gradient_time * 1e3:.1f} | {gradient_time / solve_time:.2f} | "
                        f"{error:.1e} |")
            print(rows[-1], flush=True)
    command = "python benchmarks/rules.py " + " ".join(sys.argv[1:])
    text = "\n".join([
        "# Derivative rules: the gradient through a sparse solve",
        "",
        f"Written by `{command.strip()}` on {datetime.date.today()}: {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, NumPy {np.__version__}, "
        f"SciPy {scipy.__version__}, adsrc {adsrc.__version__}.",
        "",
        "Kernel: `u[:] = spsolve(data, indices, indptr, f); return f^T u` (and the same with "
        f"`cg` to {TOLERANCE}), 2-D Poisson. *solve*: SciPy's `splu(A).solve(f)` (or `cg`) "
        "alone; *gradient*: `adsrc.value_and_grad` w.r.t. `data` and `f` (the forward solve "
        "and the adjoint's transposed solve, reusing the factorisation). Medians of "
        f"{options.repeats} calls. *error*: against the closed form `data_bar = -u_i u_j`, "
        "`f_bar = 2u` (relative to max u^2, max u). Target: gradient/solve <= 1.5 at 10^5 "
        "unknowns.",
        "",
        "| solver | grid | unknowns | nonzeros | solve ms | gradient ms | gradient/solve | "
        "error |",
        "|---|---|---|---|---|---|---|---|",
        *rows, ""])
    with open(options.output, "w") as handle:
        handle.write(text)
    print(f"wrote {options.output}")


if __name__ == "__main__":
    main()
