"""Acceptance figures for what adsrc records on its tape
(``f.adjoint.last_tape_stats``: floats_pushed, ints_pushed, peak_bytes).

Problem: the 2-D Poisson matrix on an 8 x 8 grid (n = 64 rows), with
non-symmetric perturbed entries, 3 sweeps / iterations.

* Gauss-Seidel with only ``b`` active: x stays linear in active values with
  constant coefficients, so nothing float needs recording.
* Gauss-Seidel with ``data`` and ``b`` active: only the value of x[i] that a
  row update overwrites must be kept: at most n floats per sweep (+ 8).
* Damped Jacobi with only ``alpha`` active: alpha_bar needs the residual of
  each iteration: at most n floats per iteration (+ 8).
* Weighted Jacobi (``jacobi_csr``) with ``data``, ``b`` and ``omega`` active:
  only the previous iterate ``xold`` of each iteration, as a hand adjoint
  keeps it; each row's sum is recomputed from it: at most n floats per
  iteration (+ 8).

Each configuration also checks the gradient against the hand adjoint, so a
tool that records nothing and returns garbage fails.
"""

import numpy as np
import pytest

import adsrc
from corpus import kernels as K
from corpus.hand_adjoints import gauss_seidel_adj, jacobi_csr_adj, jacobi_damped_adj
from corpus.problems import INT_DTYPES, diagonal_of, perturb_data, poisson2d_csr

pytestmark = pytest.mark.usefixtures("backend")   # every test on both backends

M = 8
N = M * M
SWEEPS = 3
SLACK = 8
RTOL = 1e-10


def _copy(args):
    return tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args)


def _close(got, want, name):
    if isinstance(want, np.ndarray):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * np.max(np.abs(want)), err_msg=name)
    else:
        assert isinstance(got, float), name
        assert got == pytest.approx(want, rel=RTOL), name


def _poisson(rng, int_dtype):
    indptr, indices, data = poisson2d_csr(M, int_dtype)
    assert len(indptr) - 1 == N
    return indptr, indices, perturb_data(rng, indptr, indices, data)


def _check_stats_object(stats):
    for field in ("floats_pushed", "ints_pushed", "peak_bytes"):
        value = getattr(stats, field)
        assert isinstance(value, (int, np.integer)) and value >= 0, (field, value)


def _run(kernel, args, wrt, x_bar):
    f = adsrc.differentiate(kernel, wrt=wrt, outputs=("x",))
    got = f.adjoint(*_copy(args), x_bar=x_bar.copy())
    stats = f.adjoint.last_tape_stats
    _check_stats_object(stats)
    return got, stats


@pytest.mark.parametrize("int_dtype", INT_DTYPES)
def test_gauss_seidel_b_active_records_no_floats(int_dtype):
    rng = np.random.default_rng(101)
    indptr, indices, data = _poisson(rng, int_dtype)
    args = (indptr, indices, data, rng.uniform(-1, 1, N), rng.uniform(-1, 1, N), SWEEPS)
    x_bar = rng.standard_normal(N)
    (b_bar,), stats = _run(K.gauss_seidel, args, ("b",), x_bar)
    assert stats.floats_pushed == 0, stats
    want = gauss_seidel_adj(*args, x_bar=x_bar)
    _close(b_bar, want["b"], "b_bar")


@pytest.mark.parametrize("int_dtype", INT_DTYPES)
def test_gauss_seidel_data_active_records_one_float_per_row_and_sweep(int_dtype):
    rng = np.random.default_rng(102)
    indptr, indices, data = _poisson(rng, int_dtype)
    args = (indptr, indices, data, rng.uniform(-1, 1, N), rng.uniform(-1, 1, N), SWEEPS)
    x_bar = rng.standard_normal(N)
    (data_bar, b_bar), stats = _run(K.gauss_seidel, args, ("data", "b"), x_bar)
    assert stats.floats_pushed <= N * SWEEPS + SLACK, stats
    want = gauss_seidel_adj(*args, x_bar=x_bar)
    _close(data_bar, want["data"], "data_bar")
    _close(b_bar, want["b"], "b_bar")


@pytest.mark.parametrize("int_dtype", INT_DTYPES)
def test_damped_jacobi_alpha_active_records_one_float_per_row_and_iteration(int_dtype):
    rng = np.random.default_rng(103)
    indptr, indices, data = _poisson(rng, int_dtype)
    dinv = 1.0 / diagonal_of(indptr, indices, data)
    alpha = 0.8
    args = (indptr, indices, data, dinv, rng.uniform(-1, 1, N), rng.uniform(-1, 1, N), alpha, SWEEPS)
    x_bar = rng.standard_normal(N)
    (alpha_bar,), stats = _run(K.jacobi_damped, args, ("alpha",), x_bar)
    assert stats.floats_pushed <= N * SWEEPS + SLACK, stats
    want = jacobi_damped_adj(*args, x_bar=x_bar)
    _close(alpha_bar, want["alpha"], "alpha_bar")
    assert abs(want["alpha"]) > 1e-3  # the check above is not vacuous


@pytest.mark.parametrize("int_dtype", INT_DTYPES)
def test_weighted_jacobi_records_the_previous_iterate_only(int_dtype):
    rng = np.random.default_rng(104)
    indptr, indices, data = _poisson(rng, int_dtype)
    args = (indptr, indices, data, rng.uniform(-1, 1, N), rng.uniform(-1, 1, N), 0.7, SWEEPS)
    x_bar = rng.standard_normal(N)
    (data_bar, b_bar, omega_bar), stats = _run(K.jacobi_csr, args, ("data", "b", "omega"), x_bar)
    assert stats.floats_pushed <= N * SWEEPS + SLACK, stats
    want = jacobi_csr_adj(*args, x_bar=x_bar)
    _close(data_bar, want["data"], "data_bar")
    _close(b_bar, want["b"], "b_bar")
    _close(omega_bar, want["omega"], "omega_bar")


@pytest.mark.parametrize("kernel, wrt, restored", [
    (K.jacobi_csr, ("data", "b", "omega"), []),      # restores only its local copy xold
    (K.jacobi_damped, ("data", "b", "alpha"), []),   # reads x's copies in place
    (K.gauss_seidel, ("data", "b"), ["x"]),           # puts back the x[i] each row overwrote
    (K.gauss_seidel, ("b",), []),                     # records nothing
])
def test_the_adjoint_keeps_aside_only_the_final_arrays_its_reverse_sweep_restores(
        kernel, wrt, restored):
    """An adjoint call copies a written array's final value aside, to give it back after the
    reverse sweep, only when that sweep writes older values into it; either way the call
    leaves the arrays as the primal does."""
    rng = np.random.default_rng(105)
    indptr, indices, data = _poisson(rng, np.int32)
    args = (indptr, indices, data, rng.uniform(-1, 1, N), rng.uniform(-1, 1, N), SWEEPS)
    if kernel is K.jacobi_csr:
        args = args[:5] + (0.7,) + args[5:]
    elif kernel is K.jacobi_damped:
        args = args[:3] + (1.0 / diagonal_of(indptr, indices, data),) + args[3:5] + (0.8,) \
            + args[5:]
    f = adsrc.differentiate(kernel, wrt=wrt, outputs=("x",))
    after_adjoint, after_primal = _copy(args), _copy(args)
    f.adjoint(*after_adjoint, x_bar=rng.standard_normal(N))
    kernel(*after_primal)
    np.testing.assert_allclose(after_adjoint[3], after_primal[3], rtol=1e-14)
    (compiled,) = f._compiled.values()
    assert compiled.entry.restored_arrays == restored


def test_calls_of_changing_sizes_each_record_and_return_their_own():
    """A compiled call takes the tape of the call before, emptied by its reverse sweep; a new
    tape starts as large as the last call's was when its forward sweep ended (``sizes``).
    Calls that need more, then less, then more again, across the 1024-value first size of each
    stack, give the hand adjoint's gradient and count what they pushed, not what the tape held
    before."""
    rng = np.random.default_rng(106)
    f = adsrc.differentiate(K.jacobi_csr, wrt=("data", "b", "omega"), outputs=("x",))
    for m in (12, 3, 20, 5, 12):
        indptr, indices, data = poisson2d_csr(m, np.int32)
        n = m * m
        args = (indptr, indices, perturb_data(rng, indptr, indices, data),
                rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), 0.7, 12)
        x_bar = rng.standard_normal(n)
        want = jacobi_csr_adj(*_copy(args), x_bar=x_bar)
        data_bar, b_bar, omega_bar = f.adjoint(*_copy(args), x_bar=x_bar.copy())
        _close(data_bar, want["data"], f"data_bar, {m}x{m}")
        _close(b_bar, want["b"], f"b_bar, {m}x{m}")
        _close(omega_bar, want["omega"], f"omega_bar, {m}x{m}")
        stats = f.adjoint.last_tape_stats
        assert n * 12 <= stats.floats_pushed <= n * 12 + SLACK, (m, stats)
        assert stats.arrays_copied == 12, (m, stats)        # xold, once per iteration
        (compiled,) = f._compiled.values()
        if compiled.backend == "cython":
            assert len(compiled._spare_tapes) == 1
            floats, ints, blocks = compiled._tape_sizes
            assert floats + blocks == stats.floats_pushed and ints == stats.ints_pushed
            assert (floats + ints + blocks) * 8 == stats.peak_bytes
