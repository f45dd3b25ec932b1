"""A learned smoother: a sparse approximate inverse trained by gradient descent through k sweeps.

The smoother is preconditioned Richardson iteration for A x = b, started from x = 0,

    x <- x + M (b - A x),        k times,        M = D^-1 Theta,

where D is A's diagonal and Theta has the sparsity pattern of A: row i of M r is
``dinv[i] * sum_p theta[p] * r[indices[p]]`` over row i's non-zeros.  Untrained, Theta is 2/3 on
the diagonal and 0 elsewhere: damped Jacobi with the classical weight 2/3.  The loss is the mean,
over a batch of right-hand sides, of the squared relative residual after k sweeps,
||b - A x_k||^2 / ||b||^2.  adsrc differentiates the loop kernel ``smoother_loss`` with respect to
``theta``; Adam, written inline, trains it on one batch of right-hand sides, and the residual is
reported on held-out right-hand sides.

The matrix is anisotropic diffusion with a jumping coefficient, -div(a K grad u) with
K = diag(1, EPS) and a = 1 or 100 on a checkerboard of blocks: point Jacobi damps badly the error
that is smooth along the strong direction only, and the weight 2/3 is tuned for the isotropic
Laplacian, so learning has something to gain.  For a fairer baseline the table also shows damped
Jacobi with the best single weight, found by a grid search on the training batch.

    python examples/learned_smoother.py
"""

import time

import numpy as np
import scipy.sparse as sp

import adsrc

GRID = 64           # GRID x GRID unknowns
EPS = 0.01          # anisotropy: coupling in y relative to x
SWEEPS = 4          # k
TRAIN, HELD_OUT = 32, 64
STEPS = 300
LEARNING_RATE = 0.05


def smoother_loss(indptr, indices, data, dinv, theta, b, sweeps):
    """Mean over the rows of ``b`` (right-hand sides) of ||b - A x_k||^2 / ||b||^2, with x_k after
    ``sweeps`` sweeps of x <- x + D^-1 Theta (b - A x) from x = 0.

    The batch is looped over inside the kernel, rather than calling the kernel once per
    right-hand side and accumulating ``theta_bar``, so one call gives the batch's loss and
    gradient: with the compiled backend the whole batch runs in C, without a Python round trip
    (argument checks, tape set-up) per right-hand side.  ``theta`` is scaled by ``dinv`` so that
    it is dimensionless (2/3 on the diagonal for damped Jacobi) whatever the coefficient's jumps:
    one learning rate then suits every row."""
    nrhs = b.shape[0]
    n = b.shape[1]
    x = np.zeros(n)
    r = np.zeros(n)
    loss = 0.0
    for s in range(nrhs):
        bb = 0.0
        for i in range(n):
            x[i] = 0.0
            bb += b[s, i] * b[s, i]
        for sweep in range(sweeps):
            for i in range(n):
                acc = b[s, i]
                for p in range(indptr[i], indptr[i + 1]):
                    acc -= data[p] * x[indices[p]]
                r[i] = acc
            for i in range(n):
                z = 0.0
                for p in range(indptr[i], indptr[i + 1]):
                    z += theta[p] * r[indices[p]]
                x[i] += dinv[i] * z
        rr = 0.0
        for i in range(n):
            # not `acc`: adsrc would then record `acc` at every row of every sweep, to restore
            # its value at the end of this loop for the previous right-hand side's reverse sweep
            res = b[s, i]
            for p in range(indptr[i], indptr[i + 1]):
                res -= data[p] * x[indices[p]]
            rr += res * res
        loss += rr / bb
    return loss / nrhs


def anisotropic_diffusion(m, eps, contrast=100.0, blocks=4):
    """Cell-centred finite volumes for -div(a K grad u) on an m x m grid, Dirichlet boundary,
    K = diag(1, eps), a = 1 or ``contrast`` on a ``blocks`` x ``blocks`` checkerboard; the
    coefficient of a face between two cells is the harmonic mean of theirs, that of a boundary
    face the cell's own.  Returns a symmetric positive definite CSR matrix, indices sorted."""
    cell = np.arange(m) * blocks // m
    a = np.where((cell[:, None] + cell[None, :]) % 2 == 0, 1.0, contrast)   # a[iy, ix]
    fx = 2 * a[:, :-1] * a[:, 1:] / (a[:, :-1] + a[:, 1:])                  # faces in x
    fy = eps * 2 * a[:-1, :] * a[1:, :] / (a[:-1, :] + a[1:, :])            # faces in y
    diag = (1 + 1 + eps + eps) * a                                           # boundary faces...
    diag[:, :-1] += fx - a[:, :-1]                                           # ...replaced by
    diag[:, 1:] += fx - a[:, 1:]                                             # interior faces
    diag[:-1, :] += fy - eps * a[:-1, :]
    diag[1:, :] += fy - eps * a[1:, :]
    idx = np.arange(m * m).reshape(m, m)
    pairs = [(idx[:, :-1], idx[:, 1:], fx), (idx[:-1, :], idx[1:, :], fy)]
    rows = np.concatenate([idx.ravel()] + [c.ravel() for p, q, _ in pairs for c in (p, q)])
    cols = np.concatenate([idx.ravel()] + [c.ravel() for p, q, _ in pairs for c in (q, p)])
    vals = np.concatenate([diag.ravel()] + [-f.ravel() for _, _, f in pairs for _ in (0, 1)])
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(m * m, m * m))
    matrix.sort_indices()
    return matrix


def jacobi_theta(a, weight=2.0 / 3.0):
    """Theta of damped Jacobi with ``weight``: ``weight`` at the diagonal entries, 0 elsewhere."""
    rows = np.repeat(np.arange(a.shape[0]), np.diff(a.indptr))
    return np.where(a.indices == rows, weight, 0.0)


def adam(value_and_grad, theta, steps, lr, beta1=0.9, beta2=0.999, eps=1e-12):
    """Plain Adam from ``theta``; returns the trained copy and the loss before each step."""
    theta = theta.copy()
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    history = []
    for t in range(1, steps + 1):
        value, g = value_and_grad(theta)
        history.append(value)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        theta -= lr * (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps)
    return theta, history


def main():
    a = anisotropic_diffusion(GRID, EPS)
    indptr, indices, data = a.indptr, a.indices, a.data
    dinv = 1.0 / a.diagonal()
    rng = np.random.default_rng(0)
    b_train = rng.standard_normal((TRAIN, a.shape[0]))
    b_test = rng.standard_normal((HELD_OUT, a.shape[0]))
    print(f"anisotropic diffusion (eps = {EPS}, coefficient jumps 1:100), {GRID}x{GRID}: "
          f"n = {a.shape[0]}, nnz = {a.nnz}; k = {SWEEPS} sweeps; "
          f"{TRAIN} training / {HELD_OUT} held-out right-hand sides")

    start = time.perf_counter()
    value_and_grad = adsrc.value_and_grad(smoother_loss, wrt="theta")
    compiled = adsrc.differentiate(smoother_loss, wrt="theta")    # for its primal and tape stats

    def train_loss_and_grad(theta):
        return value_and_grad(indptr, indices, data, dinv, theta, b_train, SWEEPS)

    def loss(theta, b):
        return compiled.primal(indptr, indices, data, dinv, theta, b, SWEEPS)

    theta0 = jacobi_theta(a)
    weights = np.linspace(0.3, 1.0, 15)
    best_weight = min(weights, key=lambda w: loss(jacobi_theta(a, w), b_train))
    theta, history = adam(train_loss_and_grad, theta0, STEPS, LEARNING_RATE)
    seconds = time.perf_counter() - start
    compiled.adjoint(indptr, indices, data, dinv, theta0, b_train, SWEEPS)
    floats = compiled.adjoint.last_tape_stats.floats_pushed

    rows = [("damped Jacobi, weight 2/3 (untrained)", theta0),
            (f"damped Jacobi, best weight {best_weight:.2f}", jacobi_theta(a, best_weight)),
            (f"learned D^-1 Theta ({STEPS} Adam steps)", theta)]
    base = loss(theta0, b_test)
    print(f"\n{'smoother':42s} {'train':>10s} {'held-out':>10s} {'vs untrained':>13s}")
    for name, th in rows:
        test = loss(th, b_test)
        print(f"{name:42s} {loss(th, b_train):10.3e} {test:10.3e} {test / base:13.3f}")
    print("(mean of ||b - A x_k||^2 / ||b||^2 after k sweeps from x = 0)")
    print(f"\ntraining loss: {history[0]:.3e} at step 0, {history[-1]:.3e} at step {STEPS - 1}; "
          f"grid search and training (compilation included) took {seconds:.1f} s")
    print(f"one gradient over the training batch tapes {floats} floats, "
          f"{floats / TRAIN:.0f} per right-hand side: (k + 1) n = {(SWEEPS + 1) * a.shape[0]}, "
          f"the residual of each sweep and the final one")


if __name__ == "__main__":
    main()
