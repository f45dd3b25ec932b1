"""Hessian-vector products: adsrc (tangent over adjoint, compiled) against its own gradient and
against JAX ``jvp(grad(f))``, side by side; writes benchmarks/HVP.md.

    python benchmarks/hvp.py [--sizes 1000,100000] [--output benchmarks/HVP.md]

Kernels (plain loops for adsrc, the natural vectorised form for JAX):

* ``membrane``: the energy of examples/newton_cg.py, sum of h*sqrt(1 + slope^2) plus springs
  and load work;
* ``norm_cubed``: ``norm(x)**3 * x[-1] + x[0]**2`` (tests/hvp_kernels.py).

For each: the time of one gradient (``adsrc.value_and_grad``), of one H v
(``hessian_operator(...).matvec``), their ratio, of H applied to 8 vectors as one ``matmat``
(vector mode: one forward+reverse sweep with 8-wide tangent work) and as 8 matvecs, timed in
alternation, and their ratio (the issue's target: matmat at least 2x faster), and JAX's jitted
``jvp(grad(f))`` (compile time apart); every H v is checked against JAX's, and matmat against
the matvecs.
"""

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import adsrc  # noqa: E402
from hvp_kernels import norm_cubed  # noqa: E402
from newton_cg import energy as membrane  # noqa: E402
from side_by_side import jax_modules, median_time  # noqa: E402

MATMAT_K = 8


def _interleaved_times(first, second, budget=2.0, repeats=10):
    """Medians of the times of ``first`` and ``second``, called in turn (so that a change of
    the machine's load between them affects both alike), and the median of the rounds' ratios
    second ÷ first."""
    rounds = []
    start = time.perf_counter()
    while len(rounds) < repeats or (time.perf_counter() - start < budget and len(rounds) < 100):
        t0 = time.perf_counter()
        first()
        t1 = time.perf_counter()
        second()
        rounds.append((t1 - t0, time.perf_counter() - t1))
    return (statistics.median(a for a, _ in rounds), statistics.median(b for _, b in rounds),
            statistics.median(b / a for a, b in rounds))


def _problems(n):
    rng = np.random.default_rng(0)
    grid = np.linspace(0.0, 1.0, n)
    load = 3.0 * np.sin(3.0 * np.pi * grid) + 1.0
    return {
        "membrane": (membrane, (rng.uniform(-0.1, 0.1, n), load, 1.0 / n, 4.0)),
        "norm_cubed": (norm_cubed, (rng.uniform(0.5, 1.5, n),)),
    }


def _jax_functions():
    modules = jax_modules()
    if modules is None:
        return None, None
    jax, jnp = modules

    def membrane_jax(u, load, h, stiffness):
        slope = (u[1:] - u[:-1]) / h
        return jnp.sum(h * jnp.sqrt(1.0 + slope * slope)) + jnp.sum(
            h * (0.5 * stiffness * u * u - load * u))

    def norm_cubed_jax(x):
        return jnp.sqrt(jnp.sum(x * x)) ** 3 * x[-1] + x[0] ** 2

    functions = {"membrane": membrane_jax, "norm_cubed": norm_cubed_jax}

    def hvp_of(name):
        f = functions[name]
        return jax.jit(lambda x, v, *rest: jax.jvp(lambda y: jax.grad(f)(y, *rest), (x,),
                                                   (v,))[1])

    return jax.__version__, hvp_of


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "HVP.md"))
    parser.add_argument("--note", default="", help="a sentence on the conditions of the run, "
                                                   "written under the date")
    options = parser.parse_args()
    sizes = [int(s) for s in options.sizes.split(",")]
    jax_version, jax_hvp = _jax_functions()
    rows = []
    for n in sizes:
        for name, (kernel, args) in _problems(n).items():
            rng = np.random.default_rng(1)
            v = rng.standard_normal(n)
            grad = adsrc.value_and_grad(kernel, wrt=0)
            hessian = adsrc.hessian_operator(kernel, *args)
            hessian.matvec(v)                                    # compile
            grad(*[np.copy(a) if isinstance(a, np.ndarray) else a for a in args])
            t_grad = median_time(lambda: grad(*[np.copy(a) if isinstance(a, np.ndarray)
                                                 else a for a in args]))
            t_hvp = median_time(lambda: hessian.matvec(v))
            vs = rng.standard_normal((n, MATMAT_K))
            columns = np.column_stack([hessian.matvec(vs[:, k]) for k in range(MATMAT_K)])
            matmat_diff = float(np.max(np.abs(hessian.matmat(vs) - columns))
                                / max(np.max(np.abs(columns)), 1e-300))
            assert matmat_diff < 1e-12, f"matmat differs from the matvecs by {matmat_diff}"
            t_matmat, t_matvecs, speedup = _interleaved_times(
                lambda: hessian.matmat(vs),
                lambda: [hessian.matvec(vs[:, k]) for k in range(MATMAT_K)])
            row = [name, n, t_grad, t_hvp, t_hvp / t_grad, t_matmat, t_matvecs, speedup]
            if jax_hvp is not None:
                f = jax_hvp(name)
                start = time.perf_counter()
                want = np.asarray(f(args[0], v, *args[1:]))
                compile_seconds = time.perf_counter() - start
                t_jax = median_time(lambda: f(args[0], v, *args[1:]).block_until_ready())
                got = hessian.matvec(v)
                diff = float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))
                row += [t_jax, t_jax / t_hvp, compile_seconds, diff]
            rows.append(row)
            print(" ".join(str(x) for x in row), flush=True)

    def ms(seconds):
        return f"{seconds * 1e3:.3g}"

    lines = [
        "# Hessian-vector products",
        "",
        f"Command: `python benchmarks/hvp.py --sizes {options.sizes}`  ",
        f"Date: {datetime.datetime.now():%Y-%m-%d %H:%M}; {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, NumPy {np.__version__}, "
        f"JAX {jax_version or 'not installed'}; adsrc backend: {adsrc.api.default_backend()}"
        + (f"  \n{options.note}" if options.note else ""),
        "",
        "Times in ms, medians of repeated calls after a warm-up; one thread everywhere. "
        "*HVP/grad* is the issue's ratio (target <= 4 at n = 10^5). *matmat* applies H to "
        f"{MATMAT_K} vectors in one call: vector mode, one forward and one reverse sweep "
        f"whose tangent work is {MATMAT_K} wide; *speed-up* is {MATMAT_K} matvecs ÷ matmat "
        "(the issue's target: >= 2), the median of the ratios of rounds that time one matmat "
        f"and then {MATMAT_K} matvecs. *JAX* is `jit(jvp(grad(f)))` on the vectorised form, "
        "compile time apart; "
        "*rel diff* compares its H v with adsrc's.",
        "",
        "| kernel | n | grad | HVP | HVP/grad | matmat (k=8) | 8 matvecs | speed-up | JAX HVP "
        "| JAX ÷ adsrc | JAX compile | rel diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        name, n, t_grad, t_hvp, ratio, t_matmat, t_matvecs, speedup = row[:8]
        jax_cells = ([ms(row[8]), f"{row[9]:.3g}", f"{row[10]:.2f} s", f"{row[11]:.1e}"]
                     if len(row) > 8 else ["not installed"] * 4)
        lines.append(f"| {name} | {n} | {ms(t_grad)} | {ms(t_hvp)} | {ratio:.2f} | "
                     f"{ms(t_matmat)} | {ms(t_matvecs)} | {speedup:.2f} | "
                     + " | ".join(jax_cells) + " |")
    with open(options.output, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print(f"wrote {options.output}")


if __name__ == "__main__":
    main()
