"""adsrc.amg: multigrid cycles of PyAMG hierarchies, differentiated by adsrc.

The references are independent of the kernel under test:

* the cycle itself against PyAMG's own ``ml.solve`` with the same smoothers (its C++
  relaxation, its W-cycle recursion, its pseudo-inverse coarse solver);
* the gradient against central differences (Richardson-extrapolated) of PyAMG's ``ml.solve``,
  and against adsrc's tangent mode, a separate transformation, by the dot-product test;
* training against the asymptotic convergence factor of PyAMG's ``ml.solve``.

Tests taking ``backend`` run on both backends (tests/conftest.py); the others raise before
anything runs.  Small grids (16x16): the Python backend runs the kernels as plain Python.
"""

import functools

import numpy as np
import pyamg
import pytest

import adsrc
import adsrc.amg

GRID = (16, 16)
CYCLES = 3
KINDS = {"rs": pyamg.ruge_stuben_solver, "sa": pyamg.smoothed_aggregation_solver}
CASES = [pytest.param(kind, smoother, cycle, id=f"{kind}-{smoother}-{cycle}")
         for kind in KINDS for smoother in ("jacobi", "sor") for cycle in ("V", "W")]


def _hierarchy(kind):
    """A fresh hierarchy (apply_to changes its smoothers), its levels' A in CSR: PyAMG 5.4's SOR
    ignores omega on BSR matrices, which smoothed aggregation makes."""
    np.random.seed(0)       # PyAMG's spectral radius estimates (SA) start from random vectors
    ml = KINDS[kind](pyamg.gallery.poisson(GRID, format="csr"), max_levels=4)
    for level in ml.levels:
        level.A = level.A.tocsr()
    return ml


def _problem(cycle, seed=0):
    """Weights near the classical ones (not symmetric in any way) and a random b and x0."""
    rng = np.random.default_rng(seed)
    n = cycle.size
    weights = cycle.initial_weights() + 0.1 * rng.uniform(-1.0, 1.0, cycle.weight_shape)
    return weights, rng.standard_normal(n), rng.standard_normal(n)


def _pyamg_residual(ml, cycle, weights, b, x0):
    """||b - A x_k|| after CYCLES of PyAMG's own solver with the weights' smoothers."""
    cycle.apply_to(ml, weights)
    residuals = []
    ml.solve(b, x0=x0.copy(), maxiter=CYCLES, cycle=cycle.cycle, tol=1e-300,
             residuals=residuals)
    assert len(residuals) == CYCLES + 1
    return residuals[-1]


def _central_differences(f, weights, h=1e-3):
    """The gradient of f by central differences, Richardson-extrapolated (error O(h^4))."""
    grad = np.zeros_like(weights)
    for index in np.ndindex(weights.shape):
        unit = np.zeros_like(weights)
        unit[index] = 1.0

        def slope(step):
            return (f(weights + step * unit) - f(weights - step * unit)) / (2.0 * step)

        grad[index] = (4.0 * slope(h / 2.0) - slope(h)) / 3.0
    return grad


@functools.lru_cache(maxsize=None)
def _tangent():
    """The kernel's tangent mode, on the Python backend (the reference) whatever the backend
    of the adjoint it checks: a second Cython module would double the compile time."""
    return adsrc.differentiate(adsrc.amg.cycle_residual_norm, wrt="weights",
                               outputs="return", backend="python").tangent


@pytest.mark.parametrize("kind, smoother, cycle_type", CASES)
def test_cycle_and_gradient(backend, kind, smoother, cycle_type):
    ml = _hierarchy(kind)
    cycle = adsrc.amg.TrainableCycle(ml, smoother=smoother, cycle=cycle_type)
    assert cycle.backend == backend
    weights, b, x0 = _problem(cycle)
    given = [weights.copy(), b.copy(), x0.copy()]

    value, grad = cycle.value_and_grad(weights, b, x0, cycles=CYCLES)
    for before, after in zip(given, (weights, b, x0)):
        np.testing.assert_array_equal(before, after)        # nothing of the user's touched

    # the cycle is PyAMG's
    assert value == pytest.approx(_pyamg_residual(ml, cycle, weights, b, x0), rel=1e-12)
    assert cycle.residual_norm(weights, b, x0, cycles=CYCLES) == pytest.approx(value, rel=1e-14)

    # the gradient: finite differences of PyAMG's solver ...
    fd = _central_differences(lambda w: _pyamg_residual(ml, cycle, w, b, x0), weights)
    assert grad.shape == cycle.weight_shape
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8 * np.abs(fd).max())
    # ... and tangent mode: <grad, v> == d/dt f(w + t v) for random directions v
    rng = np.random.default_rng(1)
    for _ in range(2):
        v = rng.standard_normal(cycle.weight_shape)
        args = cycle.arguments(weights, b, x0, cycles=CYCLES)
        (directional,) = _tangent()(*args, weights_dot=v)
        assert directional == pytest.approx(float(np.sum(grad * v)), rel=1e-11)


def test_weights_in_fortran_order(backend):
    """Weights built as two rows, then transposed: the cycle copies its arguments anyway, but
    kept their memory order, and the compiled kernel refused them, naming its own argument
    ('cycle_residual_norm: 'weights' is not C-contiguous')."""
    cycle = adsrc.amg.TrainableCycle(_hierarchy("rs"), smoother="jacobi")
    weights, b, x0 = _problem(cycle)
    transposed = np.asfortranarray(weights)
    assert not transposed.flags.c_contiguous
    value, grad = cycle.value_and_grad(weights, b, x0, cycles=CYCLES)
    assert cycle.value_and_grad(transposed, b, x0, cycles=CYCLES)[0] == value
    np.testing.assert_array_equal(cycle.value_and_grad(transposed, b, x0, cycles=CYCLES)[1],
                                  grad)
    assert cycle.residual_norm(transposed, b, x0, cycles=CYCLES) == value


def _pyamg_asymptotic_factor(ml, cycle, weights, cycles=20):
    """The residual reduction per cycle of PyAMG's own solver with the weights' smoothers on
    A x = 0, one cycle per ``ml.solve``, rescaling in between (a power iteration), as the
    geometric mean over the last half of the cycles, from the start convergence_factor takes
    with seed=0."""
    cycle.apply_to(ml, weights)
    x = np.random.default_rng(0).standard_normal(cycle.size)
    logs = []
    for _ in range(cycles):
        residuals = []
        x = ml.solve(np.zeros_like(x), x0=x, maxiter=1, cycle=cycle.cycle, tol=1e-300,
                     residuals=residuals)
        logs.append(np.log(residuals[1] / residuals[0]))
        x /= residuals[1]
    return float(np.exp(np.mean(logs[cycles // 2:])))


def test_training_lowers_the_convergence_factor(backend):
    """Normalised gradient steps on log ||r_3|| for two random right-hand sides; PyAMG
    measures the asymptotic factor (0.25 with the classical weights 2/3 on this grid, 0.14
    after)."""
    ml = _hierarchy("rs")
    cycle = adsrc.amg.TrainableCycle(ml, smoother="jacobi", cycle="V")
    rng = np.random.default_rng(5)
    training = [rng.standard_normal(cycle.size) for _ in range(2)]
    weights = cycle.initial_weights()
    before = _pyamg_asymptotic_factor(ml, cycle, weights)
    for _ in range(8):
        step = np.zeros(cycle.weight_shape)
        for b in training:
            value, grad = cycle.value_and_grad(weights, b, cycles=CYCLES)
            step += grad / value                    # the gradient of log ||r||
        weights = weights - 0.1 * step / np.linalg.norm(step)
    after = _pyamg_asymptotic_factor(ml, cycle, weights)
    assert after < 0.75 * before
    # adsrc.amg's own measure is PyAMG's
    for w, factor in ((cycle.initial_weights(), before), (weights, after)):
        assert cycle.convergence_factor(w, seed=0) == pytest.approx(factor, rel=1e-8)


def _snapshot(ml):
    """Every level matrix: its name, type and values."""
    return [(name, type(matrix).__name__, matrix.toarray() if hasattr(matrix, "toarray")
             else np.copy(matrix)) for level in ml.levels
            for name, matrix in vars(level).items() if name in ("A", "P", "R")]


def _assert_same(before, after):
    assert [(name, fmt) for name, fmt, _ in before] == [(name, fmt) for name, fmt, _ in after]
    for (_, _, old), (_, _, new) in zip(before, after):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize("bad", [
    {"weights": np.ones(3)}, {"weights": np.ones((4, 2))}, {"weights": np.ones((3, 2), complex)},
    {"weights": np.full((3, 2), np.nan)}, {"weights": np.ones((3, 2), bool)},
    {"b": np.ones(255)}, {"x0": np.ones((256, 1))},
    {"cycles": -1}, {"cycles": 2.0}], ids=lambda bad: f"{next(iter(bad))}")
def test_bad_arguments_are_refused_before_anything_runs(bad):
    ml = _hierarchy("rs")
    cycle = adsrc.amg.TrainableCycle(ml)
    assert cycle.weight_shape == (3, 2)
    call = {"weights": cycle.initial_weights(), "b": np.ones(256), "x0": np.zeros(256),
            "cycles": 2}
    call.update(bad)
    given = {name: np.copy(value) for name, value in call.items()}
    for method in (cycle.value_and_grad, cycle.residual_norm, cycle.arguments):
        with pytest.raises(adsrc.ArgumentError):
            method(**call)
    for name, value in call.items():
        np.testing.assert_array_equal(value, given[name])


def _break_format(ml):
    ml.levels[1].A = ml.levels[1].A.tocoo()


def _break_dense(ml):
    ml.levels[0].P = ml.levels[0].P.toarray()


def _break_shape(ml):
    ml.levels[1].R = ml.levels[1].R.tocsr()[:-1]


def _break_depth(ml):
    del ml.levels[1:]


@pytest.mark.parametrize("damage", [_break_format, _break_dense, _break_shape, _break_depth])
def test_bad_hierarchies_are_refused_and_left_alone(damage):
    ml = _hierarchy("sa")
    damage(ml)
    before = _snapshot(ml)
    with pytest.raises(adsrc.ArgumentError):
        adsrc.amg.TrainableCycle(ml)
    _assert_same(before, _snapshot(ml))


@pytest.mark.parametrize("options", [{"smoother": "gauss_seidel"}, {"cycle": "F"},
                                     {"sweeps": 0}])
def test_bad_options_are_refused(options):
    with pytest.raises(adsrc.ArgumentError):
        adsrc.amg.TrainableCycle(_hierarchy("rs"), **options)


def test_the_hierarchy_is_copied_not_modified(backend):
    ml = KINDS["sa"](pyamg.gallery.poisson(GRID, format="csr"), max_levels=4)   # BSR levels
    before = _snapshot(ml)
    cycle = adsrc.amg.TrainableCycle(ml, smoother="sor")
    cycle.residual_norm(cycle.initial_weights(), np.ones(cycle.size), cycles=1)
    _assert_same(before, _snapshot(ml))
    # PyAMG's SOR would ignore the weights on BSR levels
    with pytest.raises(adsrc.ArgumentError, match="BSR"):
        cycle.apply_to(ml, 1.2 * cycle.initial_weights())
    with pytest.raises(adsrc.ArgumentError, match="levels"):
        cycle.apply_to(_hierarchy("rs"), cycle.initial_weights())


def test_arguments_are_fresh_arrays(backend):
    """Changing the arrays arguments() returned (the kernel may write them) leaves the cycle as
    it was: the matrices' arrays were the object's own, and doubling A's values there changed
    its later residual norms."""
    cycle = adsrc.amg.TrainableCycle(_hierarchy("rs"), backend=backend)
    weights, b = cycle.initial_weights(), np.ones(cycle.size)
    before = cycle.residual_norm(weights, b, cycles=2)
    for array in cycle.arguments(weights, b, cycles=2):
        if isinstance(array, np.ndarray):
            array *= 2
    assert cycle.residual_norm(weights, b, cycles=2) == before
