"""The learned smoother of examples/learned_smoother.py: its gradient, and that training helps.

The gradient of ``smoother_loss`` with respect to ``theta`` is checked three independent ways,
on both backends: central finite differences of the plain-Python primal (directions and single
entries, 1e-6 relative), a hand-written adjoint of the smoother in NumPy/SciPy below (every
entry, 1e-9 relative), and adsrc's tangent mode (the dot-product test, a separate
transformation).  Then a few Adam steps on a small problem lower the residual on held-out
right-hand sides, measured by the NumPy residual recurrence rather than by the kernel itself.
"""

import importlib.util
import pathlib

import numpy as np
import pytest
import scipy.sparse as sp

import adsrc

_PATH = pathlib.Path(__file__).resolve().parents[1] / "examples" / "learned_smoother.py"
_SPEC = importlib.util.spec_from_file_location("learned_smoother", _PATH)
ls = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ls)

pytestmark = pytest.mark.usefixtures("backend")   # every test on both backends

GRID = 10
SWEEPS = 4


@pytest.fixture(scope="module")
def problem():
    a = ls.anisotropic_diffusion(GRID, 0.01, blocks=2)
    rng = np.random.default_rng(1)
    # away from damped Jacobi, so that the off-diagonal entries of theta are not all zero
    theta = ls.jacobi_theta(a) + 0.05 * rng.standard_normal(a.nnz)
    b = rng.standard_normal((3, a.shape[0]))
    return a, 1.0 / a.diagonal(), theta, b


def _args(a, dinv, theta, b):
    return (a.indptr, a.indices, a.data, dinv, theta, b, SWEEPS)


def hand_loss_and_grad(a, dinv, theta, b, sweeps):
    """The loss and its gradient, by hand: with x_0 = 0 the residuals obey
    r_{j+1} = r_j - A M r_j, r_0 = b, M = D^-1 Theta; reversing that recurrence gives
    r_bar_j = r_bar_{j+1} - M^T A^T r_bar_{j+1}, and theta[p] at (row i, column c) collects
    -(A^T r_bar_{j+1})[i] dinv[i] r_j[c] over the sweeps."""
    rows = np.repeat(np.arange(a.shape[0]), np.diff(a.indptr))
    cols = a.indices
    m = sp.diags(dinv) @ sp.csr_matrix((theta, a.indices, a.indptr), shape=a.shape)
    loss, grad = 0.0, np.zeros_like(theta)
    for rhs in b:
        weight = 1.0 / (len(b) * float(rhs @ rhs))
        residuals = [rhs]
        for _ in range(sweeps):
            residuals.append(residuals[-1] - a @ (m @ residuals[-1]))
        loss += weight * float(residuals[-1] @ residuals[-1])
        r_bar = 2.0 * weight * residuals[-1]
        for j in reversed(range(sweeps)):
            g = a.T @ r_bar
            grad -= g[rows] * dinv[rows] * residuals[j][cols]
            r_bar = r_bar - m.T @ g
    return loss, grad


def test_loss_matches_residual_recurrence(problem, backend):
    a, dinv, theta, b = problem
    expected, _ = hand_loss_and_grad(a, dinv, theta, b, SWEEPS)
    assert ls.smoother_loss(*_args(a, dinv, theta, b)) == pytest.approx(expected, rel=1e-12)
    compiled = adsrc.differentiate(ls.smoother_loss, wrt="theta", backend=backend)
    assert compiled.primal(*_args(a, dinv, theta, b)) == pytest.approx(expected, rel=1e-12)


def test_gradient_matches_central_differences(problem, backend):
    a, dinv, theta, b = problem
    value, grad = adsrc.value_and_grad(ls.smoother_loss, wrt="theta", backend=backend)(
        *_args(a, dinv, theta, b))
    assert value == pytest.approx(ls.smoother_loss(*_args(a, dinv, theta, b)), rel=1e-12)
    h = 1e-5
    rng = np.random.default_rng(2)
    diagonal = int(np.flatnonzero(a.indices == np.repeat(np.arange(a.shape[0]),
                                                         np.diff(a.indptr)))[7])
    directions = [rng.standard_normal(a.nnz) for _ in range(3)]
    for p in (diagonal, diagonal + 1, a.nnz // 2):    # a diagonal entry, its neighbour, another
        directions.append(np.eye(1, a.nnz, p).ravel())
    for v in directions:
        fd = (ls.smoother_loss(*_args(a, dinv, theta + h * v, b))
              - ls.smoother_loss(*_args(a, dinv, theta - h * v, b))) / (2 * h)
        assert float(grad @ v) == pytest.approx(fd, rel=1e-6)


def test_gradient_matches_hand_adjoint(problem, backend):
    a, dinv, theta, b = problem
    _, expected = hand_loss_and_grad(a, dinv, theta, b, SWEEPS)
    grad = adsrc.grad(ls.smoother_loss, wrt="theta", backend=backend)(*_args(a, dinv, theta, b))
    np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-12 * np.abs(expected).max())


def test_tangent_dot_product(problem, backend):
    a, dinv, theta, b = problem
    f = adsrc.differentiate(ls.smoother_loss, wrt="theta", outputs="return", backend=backend)
    theta_bar, = f.adjoint(*_args(a, dinv, theta, b))
    rng = np.random.default_rng(3)
    for _ in range(3):
        v = rng.standard_normal(a.nnz)
        tangent, = f.tangent(*_args(a, dinv, theta, b), theta_dot=v)
        assert tangent == pytest.approx(float(theta_bar @ v), rel=1e-10)


def test_training_lowers_held_out_residual(backend):
    a = ls.anisotropic_diffusion(GRID, 0.01, blocks=2)
    dinv = 1.0 / a.diagonal()
    rng = np.random.default_rng(4)
    b_train = rng.standard_normal((8, a.shape[0]))
    b_test = rng.standard_normal((16, a.shape[0]))
    value_and_grad = adsrc.value_and_grad(ls.smoother_loss, wrt="theta", backend=backend)
    theta0 = ls.jacobi_theta(a)
    theta, history = ls.adam(lambda th: value_and_grad(*_args(a, dinv, th, b_train)),
                             theta0, 15, 0.05)
    assert history[-1] < history[0]
    untrained, _ = hand_loss_and_grad(a, dinv, theta0, b_test, SWEEPS)
    trained, _ = hand_loss_and_grad(a, dinv, theta, b_test, SWEEPS)
    best_weight = min(hand_loss_and_grad(a, dinv, ls.jacobi_theta(a, w), b_test, SWEEPS)[0]
                      for w in np.linspace(0.3, 1.0, 15))
    assert trained < 0.7 * untrained
    assert trained < best_weight    # better than any single Jacobi weight, even one tuned on b_test
