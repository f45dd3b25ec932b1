"""JAX: ``jax.jit(jax.grad(loss))``, each kernel written the natural JAX way (float64).

* Gauss-Seidel (forward, backward, symmetric), SOR and the triangular solves: a ``lax.fori_loop``
  over the sweeps around a ``lax.fori_loop`` over the rows, each row a padded (ELL) gather
  ``x[cols[i]]`` dotted with the row's values and written back with ``x = x.at[i].set(...)``.
  The row loops have static bounds (a loop bounded by ``indptr`` would be a ``while_loop``,
  which has no reverse mode).  In reverse mode every row step transposes a gather of ``x`` into
  a scatter-add over a fresh n-vector, so the gradient is quadratic in n.
* Damped and weighted Jacobi, SpMV and SpMV^T: vectorised, ``jax.ops.segment_sum`` SpMV inside a
  ``lax.fori_loop`` over the iterations.

The matrix values ``data`` are the differentiated leaf (the padded row values are gathered from
it inside the loss), so the gradient is with respect to the CSR values, like adsrc's.  XLA runs on
one thread unless ``ADSRC_BENCH_PEER_THREADS`` says otherwise ("default": XLA's own pool).
"""

import os
import sys

import numpy as np

_threads = os.environ.get("ADSRC_BENCH_PEER_THREADS", "1")
if _threads != "default" and "jax" not in sys.modules:
    # one thread, like adsrc and Numba; must be set before jax is imported
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_cpu_multi_thread_eigen=false"
                               f" intra_op_parallelism_threads={_threads}").strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

NAME = "JAX"


def load():
    return jax.__version__


def _losses(spec, p):
    """loss(*leaves) for the kernel, with leaves in the order of spec.compared."""
    n = p.n
    rows = jnp.asarray(p.rows)
    indices = jnp.asarray(p.indices.astype(np.int64))
    pos = jnp.asarray(p.ell_pos)
    cols = jnp.asarray(p.ell_cols)
    diag_pos = jnp.asarray(p.diag_pos)
    dinv = jnp.asarray(p.dinv)
    w = jnp.asarray(p.w)
    sweeps = p.sweeps

    def ell(data, which):
        return data[pos] * jnp.asarray(p.ell_mask(which)), data[diag_pos]

    def gs_pass(x, vals, diag, b, forward, omega=None):
        def row(t, x):
            i = t if forward else n - 1 - t
            acc = b[i] - jnp.dot(vals[i], x[cols[i]])
            if omega is None:
                return x.at[i].set(acc / diag[i])
            return x.at[i].set((1.0 - omega) * x[i] + omega * acc / diag[i])
        return lax.fori_loop(0, n, row, x)

    name = spec.name
    if name in ("gauss_seidel", "gauss_seidel_backward", "gauss_seidel_symmetric"):
        def loss(data, b, x):
            vals, diag = ell(data, "off")

            def sweep(s, x):
                if name != "gauss_seidel_backward":
                    x = gs_pass(x, vals, diag, b, True)
                if name != "gauss_seidel":
                    x = gs_pass(x, vals, diag, b, False)
                return x
            return jnp.dot(w, lax.fori_loop(0, sweeps, sweep, x))
    elif name == "sor":
        def loss(data, b, omega, x):
            vals, diag = ell(data, "off")
            x = lax.fori_loop(0, sweeps, lambda s, x: gs_pass(x, vals, diag, b, True, omega), x)
            return jnp.dot(w, x)
    elif name in ("lower_solve", "upper_solve"):
        lower = name == "lower_solve"

        def loss(data, x):
            vals, diag = ell(data, "lower" if lower else "upper")

            def row(t, x):
                i = t if lower else n - 1 - t
                return x.at[i].set((x[i] - jnp.dot(vals[i], x[cols[i]])) / diag[i])
            return jnp.dot(w, lax.fori_loop(0, n, row, x))
    elif name == "jacobi_damped":
        def loss(data, b, alpha, x):
            def it(k, x):
                ax = jax.ops.segment_sum(data * x[indices], rows, num_segments=n,
                                         indices_are_sorted=True)
                return x + alpha * dinv * (b - ax)
            return jnp.dot(w, lax.fori_loop(0, sweeps, it, x))
    elif name == "jacobi_csr":
        offmask = jnp.asarray((p.indices != p.rows).astype(np.float64))

        def loss(data, b, omega, x):
            diag = data[diag_pos]

            def it(k, x):
                off = jax.ops.segment_sum(offmask * data * x[indices], rows, num_segments=n,
                                          indices_are_sorted=True)
                return (1.0 - omega) * x + omega * (b - off) / diag
            return jnp.dot(w, lax.fori_loop(0, sweeps, it, x))
    elif name == "spmv":
        def loss(data, x):
            return jnp.dot(w, jax.ops.segment_sum(data * x[indices], rows, num_segments=n,
                                                  indices_are_sorted=True))
    elif name == "spmv_transpose":
        def loss(data, x):
            return jnp.dot(w, jax.ops.segment_sum(data * x[rows], indices, num_segments=n))
    else:
        return None
    return loss


def build(spec, problem):
    from peers import Case

    loss = _losses(spec, problem)
    if loss is None:
        return None
    keys = spec.compared
    inputs = {"data": problem.data, "b": problem.b, "x": problem.x0}
    if spec.scalar_param:
        from problems import scalar_value
        inputs[spec.scalar_param] = scalar_value(spec, problem)
    leaves = [jnp.asarray(inputs[key]) for key in keys]
    grad = jax.jit(jax.grad(loss, argnums=tuple(range(len(keys)))))
    compiled = {}

    def compile_():
        compiled["fn"] = grad.lower(*leaves).compile()

    def run(_):
        fn = compiled.get("fn", grad)
        out = fn(*leaves)
        jax.block_until_ready(out)
        return out

    def result(_, out):
        return {key: (float(value) if key == spec.scalar_param else np.asarray(value))
                for key, value in zip(keys, out)}

    return {"grad": Case(setup=lambda: None, run=run, result=result, compile=compile_)}
