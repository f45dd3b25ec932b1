"""``adsrc.check_grads``, the checker users run on their own kernels: it must pass a right
adjoint whose arguments differ in size, and fail a wrong one, even one wrong by a little."""

import numpy as np
import pytest

import adsrc
import complex_step


def richardson(A, b, x, omega, sweeps):
    for k in range(sweeps):
        x = x + omega * (b - A @ x)
    return np.dot(x, x)


def _richardson_args():
    """A matrix of entries up to about 8 beside vectors of about 1: a polynomial of degree 10 in
    the matrix and the weight."""
    rng = np.random.default_rng(0)
    n = 6
    M = rng.random((n, n))
    return [M @ M.T + n * np.eye(n), rng.random(n) + 0.5, np.zeros(n), 0.05, 5]


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_arguments_of_different_sizes_each_take_their_own_step(backend):
    """With one step for all arguments, scaled by the largest (the matrix's 8), the weight
    moved by 8e-4 and the finite differences were off by up to 3.8e-7 relative: a mismatch
    reported about the right adjoint below."""
    args = _richardson_args()
    wrt = ("A", "b", "omega")
    report = adsrc.check_grads(richardson, args, wrt=wrt, backend=backend)
    assert report.max_error < 1e-8

    # the adjoint it passed is right: the complex step in random directions agrees
    rng = np.random.default_rng(1)
    kernel = adsrc.differentiate(richardson, wrt=wrt, backend=backend)
    direction = {"A": rng.standard_normal((6, 6)), "b": rng.standard_normal(6),
                 "omega": rng.standard_normal()}
    forward = complex_step.value_derivative(richardson, args, wrt, direction)
    grads = kernel.adjoint(*[np.copy(arg) if isinstance(arg, np.ndarray) else arg
                             for arg in args], out_bar=1.0)
    reverse = sum(float(np.sum(g * direction[name])) for name, g in zip(wrt, grads))
    assert reverse == pytest.approx(forward, rel=1e-12)


def doubled(x):
    return 2.0 * x


@adsrc.rule(doubled, returns="float64[:]")
def doubled_forward(x):
    return doubled(x), ()


@doubled_forward.backward
def _doubled_backward_slightly_wrong(saved, y_bar):
    return 2.0 * (1.0 + 1e-5) * y_bar,


def doubled_energy(x, scale, y):
    y[:] = doubled(x)
    return scale * np.dot(y, y)


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_a_wrong_adjoint_fails(backend):
    """A rule whose backward part is 1e-5 too large: check_grads reports it, also beside an
    argument a hundred times larger."""
    args = [np.linspace(0.5, 1.5, 7), 100.0, np.zeros(7)]
    with pytest.raises(AssertionError, match="adjoint and finite differences disagree"):
        adsrc.check_grads(doubled_energy, args, wrt=("x", "scale"), backend=backend)


def scaled_sum(x, c):
    return c * x[0] + x[1]


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_a_nan_fails(backend):
    """NaN agrees with nothing: a NaN gradient (here with NaN finite differences) passed, as
    its relative error NaN is not above rtol."""
    with pytest.raises(AssertionError, match="relative error nan"):
        adsrc.check_grads(scaled_sum, [np.ones(2), float("nan")], wrt="x", backend=backend)
    report = adsrc.check_grads(scaled_sum, [np.ones(2), 2.0], wrt="x", backend=backend)
    assert report.max_error < 1e-9


@pytest.mark.parametrize("settings,message", [({"step": 0.0}, "step must be a positive"),
                                              ({"step": float("nan")}, "step must be"),
                                              ({"directions": 0}, "directions must be an int"),
                                              ({"rtol": float("nan")}, "rtol must be"),
                                              ({"rtol": -1e-7}, "rtol must be"),
                                              ({"seed": "a"}, "seed must be"),
                                              ({"seed": -1}, "seed must be")])
def test_settings_that_check_nothing_are_refused(settings, message):
    """No direction passes vacuously, a zero step divides by zero, a NaN rtol passes
    anything; a seed NumPy cannot take failed with NumPy's TypeError or ValueError."""
    args = [np.linspace(0.5, 1.5, 7), 100.0, np.zeros(7)]
    with pytest.raises(adsrc.ArgumentError, match=message):
        adsrc.check_grads(doubled_energy, args, wrt="x", **settings)
