"""Dense kernels whose statements ask for a sum again and again: adsrc's compiled gradient against
its compiled primal, NumPy's primal and JAX's ``jit(grad)``, side by side; writes
benchmarks/DENSE.md.

    python benchmarks/dense.py [--sizes 100,300,1000] [--output benchmarks/DENSE.md]

Kernels (plain NumPy statements, which adsrc lowers to loops; the same statements in
``jax.numpy`` for JAX):

* ``two_products``: ``y[:] = A @ (B @ x)``, loss ``<w, y>``; each element of ``B @ x`` is asked
  for once per row of A;
* ``softmax_rows``: ``P[:, :] = np.exp(E) / np.sum(np.exp(E), axis=1)[:, None]``, loss
  ``sum(W * P)``; each row sum is asked for once per element of its row.

adsrc computes such a sum once, into an array, before the statement (adsrc/normalize/
lower_arrays.py); computed where it is used instead, each costs n times the work: n^3 for
n^2 of NumPy's.  For each kernel and n: the time of adsrc's compiled primal (``f.primal``), of
its gradient (``adsrc.value_and_grad``), their ratio, NumPy's time for the kernel as written
(its BLAS and its SIMD ``exp``), and JAX's jitted gradient (compile time apart), with the
gradient checked against JAX's.
"""

import argparse
import datetime
import os
import platform
import time

import numpy as np

import adsrc
from side_by_side import jax_modules, median_time


def two_products(A, B, x, w, y):
    y[:] = A @ (B @ x)
    return np.dot(w, y)


def softmax_rows(E, W, P):
    P[:, :] = np.exp(E) / np.sum(np.exp(E), axis=1)[:, None]
    return np.sum(W * P)


def _problems(n):
    """name -> (kernel, arguments, the argument differentiated)."""
    rng = np.random.default_rng(0)
    return {
        "two_products": (two_products, (rng.standard_normal((n, n)), rng.standard_normal((n, n)),
                                        rng.standard_normal(n), rng.standard_normal(n),
                                        np.zeros(n)), "x"),
        "softmax_rows": (softmax_rows, (rng.standard_normal((n, n)), rng.standard_normal((n, n)),
                                        np.zeros((n, n))), "E"),
    }


def _copies(args):
    return [np.copy(arg) for arg in args]


def _jax_gradients():
    """(JAX's version, {kernel: jit(grad) of its jax.numpy form}), or (None, {})."""
    modules = jax_modules()
    if modules is None:
        return None, {}
    jax, jnp = modules

    def two_products_jax(x, A, B, w):
        return jnp.dot(w, A @ (B @ x))

    def softmax_rows_jax(E, W):
        return jnp.sum(W * jnp.exp(E) / jnp.sum(jnp.exp(E), axis=1)[:, None])

    return jax.__version__, {"two_products": (jax.jit(jax.grad(two_products_jax)),
                                              lambda A, B, x, w, y: (x, A, B, w)),
                             "softmax_rows": (jax.jit(jax.grad(softmax_rows_jax)),
                                              lambda E, W, P: (E, W))}


def _row(name, n, kernel, args, wrt, jax_gradient):
    f = adsrc.differentiate(kernel, wrt=wrt)
    gradient = adsrc.value_and_grad(kernel, wrt=wrt)
    got = gradient(*_copies(args))[1]                       # compiles
    t_primal = median_time(lambda: f.primal(*_copies(args)))
    t_grad = median_time(lambda: gradient(*_copies(args)))
    t_numpy = median_time(lambda: kernel(*_copies(args)))
    row = [name, n, t_primal, t_grad, t_grad / t_primal, t_numpy]
    if jax_gradient is not None:
        function, jax_args = jax_gradient
        start = time.perf_counter()
        want = np.asarray(function(*jax_args(*args)))
        compile_seconds = time.perf_counter() - start
        t_jax = median_time(lambda: function(*jax_args(*args)).block_until_ready())
        diff = float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))
        assert diff < 1e-10, f"{name}: adsrc's gradient differs from JAX's by {diff}"
        row += [t_jax, t_jax / t_grad, compile_seconds, diff]
    return row


def _table(rows, options, jax_version):
    def ms(seconds):
        return f"{seconds * 1e3:.3g}"

    lines = [
        "# Dense kernels whose statements ask for a sum again and again",
        "",
        f"Command: `python benchmarks/dense.py --sizes {options.sizes}`  ",
        f"Date: {datetime.datetime.now():%Y-%m-%d %H:%M}; {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, NumPy {np.__version__}, "
        f"JAX {jax_version or 'not installed'}; adsrc backend: {adsrc.api.default_backend()}"
        + (f"  \n{options.note}" if options.note else ""),
        "",
        "Times in ms, medians of repeated calls after a warm-up. *primal* is adsrc's compiled "
        "primal, *grad* its compiled gradient (value and gradient), *NumPy* the kernel as "
        "written, run by NumPy (its BLAS, its SIMD `exp`), *JAX grad* `jit(grad(f))` of the "
        "same statements in `jax.numpy`, compile time apart; *rel diff* compares its gradient "
        "with adsrc's.",
        "",
        "| kernel | n | primal | grad | grad/primal | NumPy primal | JAX grad | JAX ÷ adsrc "
        "| JAX compile | rel diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        name, n, t_primal, t_grad, ratio, t_numpy = row[:6]
        jax_cells = ([ms(row[6]), f"{row[7]:.3g}", f"{row[8]:.2f} s", f"{row[9]:.1e}"]
                     if len(row) > 6 else ["not installed"] * 4)
        lines.append(f"| {name} | {n} | {ms(t_primal)} | {ms(t_grad)} | {ratio:.2f} | "
                     f"{ms(t_numpy)} | " + " | ".join(jax_cells) + " |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,300,1000")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__),
                                                         "DENSE.md"))
    parser.add_argument("--note", default="", help="a sentence on the conditions of the run, "
                                                   "written under the date")
    options = parser.parse_args()
    jax_version, jax_gradients = _jax_gradients()
    rows = []
    for n in (int(size) for size in options.sizes.split(",")):
        for name, (kernel, args, wrt) in _problems(n).items():
            rows.append(_row(name, n, kernel, args, wrt, jax_gradients.get(name)))
            print(" ".join(str(cell) for cell in rows[-1]), flush=True)
    with open(options.output, "w") as handle:
        handle.write("\n".join(_table(rows, options, jax_version)) + "\n")
    print(f"wrote {options.output}")


if __name__ == "__main__":
    main()
