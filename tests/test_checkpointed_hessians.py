"""Hessian-vector products through a checkpointed loop (adsrc.hvp, adsrc.hessian_operator of a
kernel with ``for it in adsrc.checkpointed(range(n), ...)``), on both backends.

The kernels are in tests/checkpointed_hessian_kernels.py (a heavy-ball iteration with arrays
allocated before the loop, copies among them, a step that reads the loop variable, a loss after
the loop that writes arrays), plus the Gauss-Seidel kernel of tests/checkpointed_loop_kernels.py.
Checked:

* with every schedule (binomial, periodic, store_all, and the one max_tape_bytes= picks), H v
  equals to 1e-12 the H v of the kernel without the marker (every step taped), with respect to
  an argument the loop's state copies, and with revolve also to an argument the loop writes and
  a float; the arguments are left alone;
* H v equals fourth-order central differences of the checkpointed gradient (adsrc.grad), and
  the Hessian is symmetric (``<H u, w> == <u, H w>``);
* the schedule really ran: revolve recomputes steps from checkpoints that hold the tangents of
  the state beside the state (twice its arrays and bytes), within its snapshots, and
  max_tape_bytes= counts the tangents (binomial where the adjoint alone fits store_all);
* hessian_operator: its dense matrix (matmat of the identity) is the reference Hessian, and its
  gradient that of adsrc.grad;
* a loop run until a test holds ('if test: break' ends its body) gives the H v of the kernel
  without the marker, whether the test holds or the loop runs all its steps;
* a kernel that returns nothing is refused and its arguments are unchanged.
"""

import inspect

import numpy as np
import pytest

import adsrc
import checkpointed_hessian_kernels as K
import checkpointed_loop_kernels as loops
from adsrc import checkpointing
from corpus.problems import perturb_data, poisson2d_csr
from differentiated import copies

pytestmark = pytest.mark.usefixtures("backend")   # every test on both backends

FD_STEP = 1e-4
STEPS = 9
WRT = {"u": 0, "c": 1, "beta": 2}
SCHEDULES = ("binomial", "periodic", "store_all", "budget")


def _args():
    rng = np.random.default_rng(5)
    return (rng.uniform(-1.0, 1.0, 6), rng.uniform(0.5, 1.5, 6), 0.7, STEPS)


def _direction(value, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(value.shape) if isinstance(value, np.ndarray) \
        else float(rng.standard_normal())


def _hvp(kernel, wrt, args, v):
    """``adsrc.hvp(kernel, wrt=wrt)`` at ``args``, with ``v`` right after the ``wrt`` one."""
    with_v = list(args)
    with_v.insert(list(inspect.signature(kernel).parameters).index(wrt) + 1, v)
    return adsrc.hvp(kernel, wrt=wrt)(*with_v)


def _assert_equals_the_plain_loops(marked, plain, wrt, args, v):
    """H v through the marked loop of ``marked`` is that of ``plain`` (the kernel without the
    marker), to 1e-12 of its largest entry, which is not small."""
    got = _hvp(marked, wrt, args, v)
    want = _hvp(plain, wrt, args, v)
    scale = float(np.max(np.abs(want)))
    assert scale > 1e-3
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * scale)


def _csr_problem(m, seed):
    """``(indptr, indices, data, x, b)``: a perturbed 2-D Poisson matrix of an m x m grid."""
    rng = np.random.default_rng(seed)
    indptr, indices, data = poisson2d_csr(m)
    data = perturb_data(rng, indptr, indices, data)
    n = len(indptr) - 1
    return indptr, indices, data, rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)


@pytest.fixture
def schedules_run(monkeypatch):
    """The (state arrays, ScheduleCounts) of every checkpoint schedule run."""
    runs = []
    run_schedule = checkpointing.run_schedule

    def recording(actions, state, **sweeps):
        counts = run_schedule(actions, state, **sweeps)
        runs.append((list(state), counts))
        return counts

    monkeypatch.setattr(checkpointing, "run_schedule", recording)
    return runs


# every schedule with respect to c, revolve's also with respect to the others (each kernel and
# wrt is a compiled module of its own)
@pytest.mark.parametrize("schedule, wrt", [(schedule, "c") for schedule in SCHEDULES]
                         + [("binomial", "u"), ("binomial", "beta")])
def test_hvp_equals_that_of_the_plain_loop(schedule, wrt):
    args = _args()
    before = copies(args)
    _assert_equals_the_plain_loops(getattr(K, "heavy_ball_" + schedule), K.heavy_ball_plain,
                                   wrt, args, _direction(args[WRT[wrt]], 11))
    for arg, was in zip(args, before):
        np.testing.assert_array_equal(arg, was)


@pytest.mark.parametrize("wrt", sorted(WRT))
def test_hvp_equals_finite_differences_of_the_checkpointed_gradient(wrt):
    args = _args()
    position = WRT[wrt]
    v = _direction(args[position], 12)
    hv = _hvp(K.heavy_ball_binomial, wrt, args, v)
    grad = adsrc.grad(K.heavy_ball_binomial, wrt=wrt)

    def gradient_at(h):
        moved = list(copies(args))
        moved[position] = moved[position] + h * v
        return np.asarray(grad(*moved))

    fd = (-gradient_at(2 * FD_STEP) + 8 * gradient_at(FD_STEP) - 8 * gradient_at(-FD_STEP)
          + gradient_at(-2 * FD_STEP)) / (12 * FD_STEP)
    scale = float(np.max(np.abs(fd)))
    assert scale > 1e-3
    np.testing.assert_allclose(hv, fd, rtol=1e-7, atol=1e-8 * scale)


@pytest.mark.parametrize("wrt", ("u", "c"))
def test_hessian_is_symmetric(wrt):
    args = _args()
    u, w = _direction(args[WRT[wrt]], 13), _direction(args[WRT[wrt]], 14)
    hu = _hvp(K.heavy_ball_binomial, wrt, args, u)
    hw = _hvp(K.heavy_ball_binomial, wrt, args, w)
    assert float(np.dot(hu, w)) == pytest.approx(float(np.dot(u, hw)), rel=1e-12)


def test_revolve_recomputes_from_checkpoints_that_hold_the_tangents(schedules_run):
    args = _args()
    _hvp(K.heavy_ball_binomial, "c", args, _direction(args[1], 15))
    (state, counts), = schedules_run
    n = len(args[0])
    # u, v, s, old and their tangents
    assert [array.shape for array in state] == [(n,)] * 8
    assert counts.forward_steps > STEPS
    assert counts.taped_steps == counts.reverse_steps == STEPS
    assert counts.peak_snapshots == 3
    adsrc.grad(K.heavy_ball_binomial, wrt="c")(*copies(args))
    assert len(schedules_run[-1][0]) == 4          # the adjoint's checkpoints: the state alone


def test_max_tape_bytes_counts_the_tangents(schedules_run):
    """With the budget, the adjoint's checkpoints and tapes fit store_all, the tangent's (twice
    as large) do not: its schedule is binomial, within the budget."""
    args = _args()
    adsrc.grad(K.heavy_ball_budget, wrt="c")(*copies(args))
    _hvp(K.heavy_ball_budget, "c", args, _direction(args[1], 16))
    (_, adjoint), (_, second_order) = schedules_run
    assert adjoint.taped_steps == adjoint.forward_steps == STEPS      # store_all
    assert second_order.forward_steps > STEPS                         # binomial
    assert 0 < second_order.peak_bytes <= K.BUDGET < 2 * adjoint.peak_bytes


def test_hessian_operator():
    args = _args()
    hessian = adsrc.hessian_operator(K.heavy_ball_binomial, *args, wrt="u")
    n = len(args[0])
    dense = hessian.matmat(np.eye(n))
    want = np.column_stack([_hvp(K.heavy_ball_plain, "u", args, e) for e in np.eye(n)])
    np.testing.assert_allclose(dense, want, rtol=0, atol=1e-12 * float(np.max(np.abs(want))))
    np.testing.assert_allclose(dense, dense.T, rtol=0, atol=1e-12 * float(np.max(np.abs(want))))
    np.testing.assert_allclose(hessian.gradient,
                               adsrc.grad(K.heavy_ball_binomial, wrt="u")(*copies(args)),
                               rtol=1e-12)


def test_gauss_seidel_sweeps_with_the_matrix_values_active():
    indptr, indices, data, x, b = _csr_problem(3, 3)
    _assert_equals_the_plain_loops(loops.many_sweeps, loops.many_sweeps_plain, "data",
                                   (data, indices, indptr, b, x, 5), _direction(data, 17))


@pytest.mark.parametrize("tol", (1e-3, 1e-14))
def test_a_loop_run_until_a_test_holds(tol):
    """Its body ends with 'if rr <= tol * tol: break': the steps stop where the kernel's do,
    after 11 of at most 40 sweeps at 1e-3, at the 40th at 1e-14."""
    args = (*_csr_problem(4, 6), tol, 40)
    assert loops.sweeps_to_tolerance(*copies(args)) == ((40, "max_steps") if tol < 1e-6
                                                        else (11, "until"))
    _assert_equals_the_plain_loops(loops.to_tolerance_binomial, loops.to_tolerance_plain,
                                   "data", args, _direction(args[2], 18))


def test_a_kernel_that_returns_nothing_is_refused():
    args = (np.linspace(0.5, 1.5, 6), 4)
    before = copies(args)
    hvp = adsrc.hvp(loops.tiny, wrt="x")
    with pytest.raises(adsrc.AdsrcError, match="the kernel returns nothing"):
        hvp(args[0], np.ones(6), 0.3, args[1])
    for arg, was in zip(args, before):
        np.testing.assert_array_equal(arg, was)
