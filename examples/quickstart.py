"""adsrc quickstart: the adjoint of Gauss-Seidel sweeps on a 2-D Poisson matrix.

Loss: L = 0.5 * ||x_final||^2, where x_final is x after SWEEPS Gauss-Seidel
sweeps for A x = b started from x = 0, and A's non-zeros (``data``) and ``b``
are the inputs we differentiate with respect to.

Run:  python examples/quickstart.py      (exit status 1 if a gradient check fails)
"""

import sys

import numpy as np
import scipy.sparse as sp

import adsrc

GRID = 16  # 16 x 16 interior points -> a 256 x 256 matrix
SWEEPS = 4


@adsrc.differentiate(wrt=("data", "b"), outputs=("x",))
def gauss_seidel(indptr, indices, data, x, b, sweeps):
    n = len(b)
    for sweep in range(sweeps):
        for i in range(n):
            diag = 1.0
            acc = b[i]
            for k in range(indptr[i], indptr[i + 1]):
                j = indices[k]
                if j == i:
                    diag = data[k]
                else:
                    acc -= data[k] * x[j]
            x[i] = acc / diag


def poisson_2d(m):
    """5-point Laplacian on an m x m grid (Dirichlet boundary), CSR."""
    t = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m))
    eye = sp.identity(m)
    a = (sp.kron(eye, t) + sp.kron(t, eye)).tocsr()
    a.sort_indices()
    return a


def loss(indptr, indices, data, b):
    x = np.zeros(len(b))
    gauss_seidel(indptr, indices, data, x, b, SWEEPS)
    return 0.5 * float(x @ x)


def main():
    a = poisson_2d(GRID)
    indptr, indices, data = a.indptr, a.indices, a.data.copy()
    n = a.shape[0]
    rng = np.random.default_rng(0)
    b = rng.standard_normal(n)
    print(f"2-D Poisson, {GRID}x{GRID} grid: n = {n}, nnz = {a.nnz}, {SWEEPS} Gauss-Seidel sweeps")
    ok = True

    # Forward once to get x_final, the seed of the reverse sweep: dL/dx_final = x_final.
    x_final = np.zeros(n)
    gauss_seidel(indptr, indices, data, x_final, b, SWEEPS)
    x_bar = x_final.copy()

    # adjoint() re-runs the primal on x (leaving x == x_final), then the reverse sweep.
    x = np.zeros(n)
    data_bar, b_bar = gauss_seidel.adjoint(indptr, indices, data, x, b, SWEEPS, x_bar=x_bar)
    stats = gauss_seidel.adjoint.last_tape_stats  # read now: check_grads below calls adjoint() again
    if not np.array_equal(x, x_final):
        print("FAIL: adjoint() did not leave x as the primal does")
        ok = False
    print(f"L = {0.5 * float(x_final @ x_final):.6e}, "
          f"||dL/ddata|| = {np.linalg.norm(data_bar):.6e}, ||dL/db|| = {np.linalg.norm(b_bar):.6e}")
    print(f"tape: floats_pushed = {stats.floats_pushed}, ints_pushed = {stats.ints_pushed}, "
          f"peak_bytes = {stats.peak_bytes}")

    # 1) adsrc's own checker: finite differences with Richardson extrapolation vs. the adjoint.
    args = (indptr, indices, data, np.zeros(n), b, SWEEPS)
    try:
        report = adsrc.check_grads(gauss_seidel, args, wrt=("data", "b"), outputs=("x",))
        print(f"check_grads: OK\n{report}")
    except AssertionError as err:
        print(f"check_grads: FAIL\n{err}")
        ok = False

    # 2) One directional derivative by hand: central difference of L along (v_data, v_b).
    v_data = rng.standard_normal(data.shape)
    v_b = rng.standard_normal(n)
    h = 1e-5
    fd = (loss(indptr, indices, data + h * v_data, b + h * v_b)
          - loss(indptr, indices, data - h * v_data, b - h * v_b)) / (2 * h)
    ad = float(data_bar @ v_data + b_bar @ v_b)
    rel = abs(fd - ad) / max(abs(fd), abs(ad), 1e-300)
    print(f"directional derivative: adjoint = {ad:.12e}, central difference = {fd:.12e}, rel. diff = {rel:.1e}")
    if not rel < 1e-6:
        print("FAIL: adjoint and central difference disagree")
        ok = False

    print("\n# ---- generated adjoint source ----")
    print(gauss_seidel.source("adjoint"))

    print("quickstart: OK" if ok else "quickstart: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
