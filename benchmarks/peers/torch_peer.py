"""PyTorch autograd (CPU, float64), each kernel written the natural PyTorch way.

* Gauss-Seidel (forward, backward, symmetric), SOR and the triangular solves: a Python loop over
  the sweeps and rows updating a working copy of x element by element, ``x[i] = ...``, on a
  ``clone()`` of the leaf (autograd refuses in-place writes to a leaf; SOR also clones the
  ``x[i]`` it reads, which a later in-place write would otherwise invalidate: "one of the
  variables needed for gradient computation has been modified by an inplace operation").  Each
  row reads a padded (ELL) row ``vals[i] @ x[cols[i]]``; the padded values are gathered from the
  CSR ``data`` leaf once per call.  Autograd records several nodes per row, and the backward of
  each element read/write materialises a full-size gradient, so the backward is quadratic in n.
* Damped and weighted Jacobi, SpMV and SpMV^T: vectorised, SpMV as
  ``zeros(n).index_add(0, rows, data * x[indices])``.

The gradient is taken with ``torch.autograd.grad`` of ``<w, out>`` (forward + backward timed), on
one thread unless ``ADSRC_BENCH_PEER_THREADS`` says otherwise ("default": PyTorch's own pool).
"""

import os

import numpy as np
import torch

NAME = "PyTorch"

torch.set_default_dtype(torch.float64)
if os.environ.get("ADSRC_BENCH_PEER_THREADS", "1") != "default":
    # one thread, like adsrc and Numba (and PyTorch's pool is erratic on a small shared VM)
    torch.set_num_threads(int(os.environ.get("ADSRC_BENCH_PEER_THREADS", "1")))


def load():
    return torch.__version__


def _loss(spec, p):
    n = p.n
    t = torch.as_tensor
    rows = t(p.rows)
    indices = t(p.indices.astype(np.int64))
    pos = t(p.ell_pos)
    cols = t(p.ell_cols)
    diag_pos = t(p.diag_pos)
    dinv = t(p.dinv)
    w = t(p.w)
    sweeps = p.sweeps

    def ell(data, which):
        return data[pos] * t(p.ell_mask(which)), data[diag_pos]

    def gs_pass(x, vals, diag, b, forward, omega=None):
        order = range(n) if forward else range(n - 1, -1, -1)
        for i in order:
            acc = b[i] - torch.dot(vals[i], x[cols[i]])
            if omega is None:
                x[i] = acc / diag[i]
            else:
                x[i] = (1.0 - omega) * x[i].clone() + omega * acc / diag[i]
        return x

    name = spec.name
    if name in ("gauss_seidel", "gauss_seidel_backward", "gauss_seidel_symmetric"):
        def loss(data, b, x0):
            vals, diag = ell(data, "off")
            x = x0.clone()
            for s in range(sweeps):
                if name != "gauss_seidel_backward":
                    x = gs_pass(x, vals, diag, b, True)
                if name != "gauss_seidel":
                    x = gs_pass(x, vals, diag, b, False)
            return torch.dot(w, x)
    elif name == "sor":
        def loss(data, b, omega, x0):
            vals, diag = ell(data, "off")
            x = x0.clone()
            for s in range(sweeps):
                x = gs_pass(x, vals, diag, b, True, omega)
            return torch.dot(w, x)
    elif name in ("lower_solve", "upper_solve"):
        lower = name == "lower_solve"

        def loss(data, x0):
            vals, diag = ell(data, "lower" if lower else "upper")
            x = x0.clone()
            for i in (range(n) if lower else range(n - 1, -1, -1)):
                x[i] = (x[i] - torch.dot(vals[i], x[cols[i]])) / diag[i]
            return torch.dot(w, x)
    elif name == "jacobi_damped":
        def loss(data, b, alpha, x):
            for it in range(sweeps):
                ax = torch.zeros(n).index_add(0, rows, data * x[indices])
                x = x + alpha * dinv * (b - ax)
            return torch.dot(w, x)
    elif name == "jacobi_csr":
        offmask = t((p.indices != p.rows).astype(np.float64))

        def loss(data, b, omega, x):
            diag = data[diag_pos]
            for it in range(sweeps):
                off = torch.zeros(n).index_add(0, rows, offmask * data * x[indices])
                x = (1.0 - omega) * x + omega * (b - off) / diag
            return torch.dot(w, x)
    elif name == "spmv":
        def loss(data, x):
            return torch.dot(w, torch.zeros(n).index_add(0, rows, data * x[indices]))
    elif name == "spmv_transpose":
        def loss(data, x):
            return torch.dot(w, torch.zeros(n).index_add(0, indices, data * x[rows]))
    else:
        return None
    return loss


def build(spec, problem):
    from peers import Case
    from problems import scalar_value

    loss = _loss(spec, problem)
    if loss is None:
        return None
    keys = spec.compared
    inputs = {"data": problem.data, "b": problem.b, "x": problem.x0}
    if spec.scalar_param:
        inputs[spec.scalar_param] = np.float64(scalar_value(spec, problem))

    def setup():
        return [torch.tensor(inputs[key], requires_grad=True) for key in keys]

    def run(leaves):
        return torch.autograd.grad(loss(*leaves), leaves)

    def result(_, out):
        return {key: (float(g) if key == spec.scalar_param else g.numpy())
                for key, g in zip(keys, out)}

    return {"grad": Case(setup=setup, run=run, result=result)}
