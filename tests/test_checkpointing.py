"""Checkpointed adjoints of long iteration loops: ``adsrc.checkpointed(step, ...)``.

A loop of ``steps`` calls of a differentiated step kernel is reversed with the binomial (revolve),
periodic or store-all schedule.  Checked here, on both backends:

* every schedule gives the store-all gradients to 1e-12 relative (damped Jacobi, Gauss-Seidel
  with data, b and x active, an explicit reaction-diffusion step, a step whose reverse sweep does
  not put its state back), and the arrays end as the primal leaves them;
* the gradients equal two independent references: the plain adjoint of a kernel with the same
  loop written inside (the hand adjoints of the corpus for Jacobi and Gauss-Seidel), and central
  finite differences of the whole loop;
* the tool's own counts: revolve runs 1000 + optimal_extra_steps(1000, 10) = 4636 step
  executions for 1000 steps and 10 snapshots, store-all runs exactly ``steps``; checkpoints plus
  step tapes stay within 11 copies of x (+ O(1)) for Gauss-Seidel with data active;
* ``max_tape_bytes=`` picks store-all or the right number of snapshots and refuses, before
  anything runs, when nothing fits; bad arguments raise clear errors and change nothing;
* loops run ``until=`` a predicate holds (online schedules): the gradients are those of
  ``steps=n`` for the trip count n, with at most ``snapshots`` checkpoints, the step executions
  of the online schedule counted independently, a stop at ``max_steps``, agreement with finite
  differences of the loop run to its tolerance, and clear errors for bad combinations.

The loop marked inside a kernel (``for it in adsrc.checkpointed(range(n), ...)``) is tested in
test_checkpointed_loops.py.
"""

import inspect

import numpy as np
import pytest
from checkpoint_schedules.multistage import optimal_extra_steps

import adsrc
from adsrc.api import _Swept
from adsrc.checkpointing import checkpointed
from adsrc.runtime.checkpointing import (online_actions, reverses_one_step_at_a_time,
                                         run_schedule, schedule_actions)
from corpus import kernels as K
from corpus import steps as S
from corpus.hand_adjoints import gauss_seidel_adj, jacobi_damped_adj
from corpus.problems import diagonal_of, perturb_data, poisson2d_csr
from differentiated import assert_gradients_close, copies, differentiated

pytestmark = pytest.mark.usefixtures("backend")   # every test on both backends

STEPS = 13
SCHEDULES = [("binomial", 3), ("binomial", 1), ("binomial", 40), ("periodic", 4),
             ("periodic", 1)]

def _csr(rng, m=4):
    indptr, indices, data = poisson2d_csr(m)
    return indptr, indices, perturb_data(rng, indptr, indices, data)


class Case:
    """A step kernel, its arguments, wrt/outputs, and the same loop as one kernel."""

    def __init__(self, name, step, args, wrt, outputs, loop_kernel, loop_args, hand=None):
        self.name, self.step, self.args = name, step, args
        self.wrt, self.outputs = wrt, outputs
        self.loop_kernel, self.loop_args, self.hand = loop_kernel, loop_args, hand

    def seeds(self, rng):
        params = list(inspect.signature(self.step).parameters)
        return {out + "_bar": rng.standard_normal(np.shape(self.args[params.index(out)]))
                for out in self.outputs}


def _gauss_seidel():
    rng = np.random.default_rng(1)
    indptr, indices, data = _csr(rng)
    n = len(indptr) - 1
    x, b = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    return Case("gauss_seidel", K.gauss_seidel, (indptr, indices, data, x, b, 1),
                ("data", "b", "x"), ("x",), K.gauss_seidel,
                lambda steps: (indptr, indices, data, x, b, steps),
                hand=lambda steps, x_bar: gauss_seidel_adj(indptr, indices, data, x, b, steps,
                                                           x_bar=x_bar))


def _jacobi():
    rng = np.random.default_rng(2)
    indptr, indices, data = _csr(rng)
    n = len(indptr) - 1
    dinv = 1.0 / diagonal_of(indptr, indices, data)
    x, b = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    return Case("jacobi_damped", K.jacobi_damped, (indptr, indices, data, dinv, x, b, 0.8, 1),
                ("data", "b", "x", "alpha"), ("x",), K.jacobi_damped,
                lambda steps: (indptr, indices, data, dinv, x, b, 0.8, steps),
                hand=lambda steps, x_bar: jacobi_damped_adj(indptr, indices, data, dinv, x, b,
                                                            0.8, steps, x_bar=x_bar))


def _reaction_diffusion():
    rng = np.random.default_rng(3)
    n = 12
    u = rng.uniform(0.1, 0.9, n)
    d = rng.uniform(0.1, 0.3, n)
    return Case("reaction_diffusion", S.reaction_diffusion_step, (u, d, 2.0, 0.2),
                ("u", "d", "r"), ("u",), S.reaction_diffusion,
                lambda steps: (u, d, 2.0, 0.2, steps))


def _relay():
    rng = np.random.default_rng(4)
    x, y = rng.uniform(0.1, 0.5, 5), rng.uniform(0.1, 0.5, 5)
    return Case("relay", S.relay_step, (x, y), ("x", "y"), ("x", "y"), S.relay,
                lambda steps: (x, y, steps))


def _relay_x_only():
    """y is active but neither wrt nor an output: its adjoint carries from step to step."""
    case = _relay()
    case.name, case.wrt, case.outputs = "relay_x_only", ("x",), ("x",)
    return case


CASES = {case.name: case for case in (_gauss_seidel(), _jacobi(), _reaction_diffusion(),
                                      _relay(), _relay_x_only())}


def _adjoint(case, backend, steps, seeds, **options):
    """(gradients, final arguments, stats) of the checkpointed loop, on copies."""
    loop = checkpointed(differentiated(case.step, case.wrt, case.outputs, backend), **options)
    args = copies(case.args)
    grads = loop.adjoint(*args, steps=steps, **{k: v.copy() for k, v in seeds.items()})
    return grads, args, loop.adjoint.last_stats


def _primal_final(case, backend, steps):
    loop = checkpointed(differentiated(case.step, case.wrt, case.outputs, backend),
                        schedule="store_all")
    args = copies(case.args)
    loop(*args, steps=steps)
    return args


@pytest.mark.parametrize("schedule,snapshots", SCHEDULES)
@pytest.mark.parametrize("name", list(CASES))
def test_every_schedule_gives_the_store_all_gradients(name, schedule, snapshots, backend):
    case = CASES[name]
    seeds = case.seeds(np.random.default_rng(10))
    want, _, stats_all = _adjoint(case, backend, STEPS, seeds, schedule="store_all")
    got, final, stats = _adjoint(case, backend, STEPS, seeds, schedule=schedule,
                                 snapshots=snapshots)
    assert_gradients_close(got, want, case.wrt)
    for got_arg, want_arg in zip(final, _primal_final(case, backend, STEPS)):
        np.testing.assert_array_equal(got_arg, want_arg)    # arrays end as the primal leaves them
    assert stats_all.forward_steps == STEPS and stats_all.peak_snapshots == 0
    assert stats.taped_steps == stats.reverse_steps == STEPS
    assert stats.peak_snapshots <= snapshots
    # binomial runs the step's own adjoint; the others its restoring variant, which may record more
    assert stats.tape_floats <= stats_all.tape_floats
    if schedule == "periodic":
        assert stats.tape_floats == stats_all.tape_floats


@pytest.mark.parametrize("name", list(CASES))
def test_equals_the_adjoint_of_the_loop_written_in_a_kernel(name, backend):
    case = CASES[name]
    seeds = case.seeds(np.random.default_rng(11))
    got, _, _ = _adjoint(case, backend, STEPS, seeds, schedule="binomial", snapshots=3)
    whole = differentiated(case.loop_kernel, case.wrt, case.outputs, backend)
    want = whole.adjoint(*copies(case.loop_args(STEPS)),
                         **{k: v.copy() for k, v in seeds.items()})
    assert_gradients_close(got, want, case.wrt)
    if case.hand is not None:
        hand = case.hand(STEPS, seeds["x_bar"])
        for param, value in zip(case.wrt, got):
            np.testing.assert_allclose(value, hand[param], rtol=1e-10,
                                       atol=1e-10 * np.max(np.abs(hand[param])), err_msg=param)


@pytest.mark.parametrize("schedule,snapshots", [("binomial", 3), ("periodic", 4),
                                                ("store_all", None)])
@pytest.mark.parametrize("name", list(CASES))
def test_agrees_with_finite_differences_of_the_whole_loop(name, schedule, snapshots, backend):
    case = CASES[name]
    loop = checkpointed(differentiated(case.step, case.wrt, case.outputs, backend),
                        schedule=schedule, snapshots=snapshots)
    params = loop.step.params
    rng = np.random.default_rng(12)
    direction = {p: rng.standard_normal(np.shape(case.args[params.index(p)])) for p in case.wrt}
    weights = {p: rng.standard_normal(np.shape(case.args[params.index(p)]))
               for p in case.outputs}

    def projected(t):
        args = list(copies(case.args))
        for p, v in direction.items():
            args[params.index(p)] = args[params.index(p)] + t * v
        loop(*args, steps=STEPS)
        return sum(float(np.sum(weights[p] * args[params.index(p)])) for p in case.outputs)

    def central(h):
        return (projected(h) - projected(-h)) / (2 * h)

    h = 1e-4
    fd = (4.0 * central(h / 2) - central(h)) / 3.0
    grads = loop.adjoint(*copies(case.args), steps=STEPS,
                         **{p + "_bar": w.copy() for p, w in weights.items()})
    ad = sum(float(np.sum(direction[p] * g)) for p, g in zip(case.wrt, grads))
    assert ad == pytest.approx(fd, rel=1e-7, abs=1e-9)


def test_revolve_runs_the_optimal_number_of_steps(backend):
    step = differentiated(S.tiny_step, ("x", "a"), ("x",), backend)
    x0, a, seed = np.array([0.3, -0.2]), 0.9, np.array([1.0, -0.5])
    runs = {}
    for schedule, snapshots in (("binomial", 10), ("store_all", None), ("periodic", 10)):
        loop = checkpointed(step, schedule=schedule, snapshots=snapshots)
        x = x0.copy()
        runs[schedule] = loop.adjoint(x, a, steps=1000, x_bar=seed.copy()), loop.adjoint.last_stats
    grads, stats = runs["binomial"]
    assert optimal_extra_steps(1000, 10) == 3636
    assert stats.forward_steps == 1000 + 3636 == 4636
    assert stats.taped_steps == stats.reverse_steps == 1000
    assert stats.peak_snapshots == 10
    assert runs["store_all"][1].forward_steps == 1000
    assert runs["periodic"][1].forward_steps == 1000 + 900    # every segment but the last re-run
    assert runs["periodic"][1].peak_snapshots == 9
    assert_gradients_close(grads, runs["store_all"][0], ("x", "a"))
    assert_gradients_close(runs["periodic"][0], runs["store_all"][0], ("x", "a"))


def test_revolve_calls_the_python_function_numba_would_compile(monkeypatch):
    """Where Numba is installed, checkpoint_schedules' revolve helper is a Numba function
    compiled at its first call, seconds in every process; adsrc calls the Python function it
    keeps as ``py_func`` (the same actions).  A stand-in for the Numba function here: the test
    environment need not have Numba."""
    from checkpoint_schedules import multistage

    want = schedule_actions("binomial", 50, 4)
    python = multistage.n_advance
    assert inspect.isfunction(python)

    class Compiled:
        def __init__(self):
            self.py_func = python

        def __call__(self, *args, **kwargs):
            raise AssertionError("the compiled helper was called")

    monkeypatch.setattr(multistage, "n_advance", Compiled())
    assert [repr(action) for action in schedule_actions("binomial", 50, 4)] == \
        [repr(action) for action in want]
    assert multistage.n_advance is python


def test_binomial_holds_at_most_eleven_copies_of_x(backend):
    """Gauss-Seidel with data active tapes one float per row and sweep: with 10 snapshots,
    checkpoints plus the one step tape held at once are 11 copies of x, plus a few integers."""
    rng = np.random.default_rng(5)
    indptr, indices, data = _csr(rng, m=8)
    n = len(indptr) - 1
    x, b = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    step = differentiated(K.gauss_seidel, ("data", "b", "x"), ("x",), backend)
    loop = checkpointed(step, schedule="binomial", snapshots=10)
    loop.adjoint(indptr, indices, data, x, b, 1, steps=60, x_bar=np.ones(n))
    stats = loop.adjoint.last_stats
    assert stats.state_bytes == x.nbytes
    assert stats.peak_snapshots == 10
    assert 11 * x.nbytes <= stats.peak_bytes <= 11 * x.nbytes + 64, stats
    assert stats.tape_floats == 60 * n


def _gs_problem(seed=6):
    rng = np.random.default_rng(seed)
    indptr, indices, data = _csr(rng)
    n = len(indptr) - 1
    return (indptr, indices, data, rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), 1), n


def test_max_tape_bytes_picks_store_all_when_it_fits(backend):
    step = differentiated(K.gauss_seidel, ("data", "b", "x"), ("x",), backend)
    n = 16
    want, _, all_stats = _adjoint(CASES["gauss_seidel"], backend, STEPS,
                                  {"x_bar": np.ones(n)}, schedule="store_all")
    loop = checkpointed(step, max_tape_bytes=all_stats.peak_bytes)
    got = loop.adjoint(*copies(CASES["gauss_seidel"].args), steps=STEPS, x_bar=np.ones(n))
    stats = loop.adjoint.last_stats
    assert stats.schedule == "store_all" and stats.forward_steps == STEPS
    assert stats.peak_bytes <= all_stats.peak_bytes
    assert_gradients_close(got, want, ("data", "b", "x"))


def test_budgeted_calls_record_on_the_tape_the_last_call_handed_back(backend, monkeypatch):
    """Planning under ``max_tape_bytes`` probes one step on a tape of its own, which it drops
    full: the tape kept by the last call is left for the call's own recording."""
    step = differentiated(K.gauss_seidel, ("data", "b", "x"), ("x",), backend)
    n = 16
    want, _, all_stats = _adjoint(CASES["gauss_seidel"], backend, STEPS,
                                  {"x_bar": np.ones(n)}, schedule="store_all")
    loop = checkpointed(step, max_tape_bytes=all_stats.peak_bytes)
    loop.adjoint(*copies(CASES["gauss_seidel"].args), steps=STEPS, x_bar=np.ones(n))
    taken, make_tape = [], _Swept.make_tape
    monkeypatch.setattr(_Swept, "make_tape", lambda self: taken.append(make_tape(self))
                        or taken[-1])
    for _ in range(3):
        got = loop.adjoint(*copies(CASES["gauss_seidel"].args), steps=STEPS, x_bar=np.ones(n))
        assert_gradients_close(got, want, ("data", "b", "x"))
        assert loop.adjoint.last_stats.schedule == "store_all"
    assert len(taken) == 3
    if backend == "cython":         # (the Python backend keeps no tape: its tapes are lists)
        assert taken[1] is taken[0] and taken[2] is taken[0]


def test_max_tape_bytes_picks_the_snapshots_that_fit(backend):
    step = differentiated(K.gauss_seidel, ("data", "b", "x"), ("x",), backend)
    args, n = _gs_problem()
    one = checkpointed(step, schedule="binomial", snapshots=1)
    one.adjoint(*copies(args), steps=1, x_bar=np.ones(n))
    step_bytes = one.adjoint.last_stats.peak_bytes          # the tape of one step
    state_bytes = 8 * n
    for budget, snapshots in ((5 * state_bytes + step_bytes, 5),
                              (5 * state_bytes + step_bytes + state_bytes - 1, 5),
                              (state_bytes + step_bytes, 1)):
        loop = checkpointed(step, max_tape_bytes=budget)
        loop.adjoint(*copies(args), steps=STEPS, x_bar=np.ones(n))
        stats = loop.adjoint.last_stats
        assert (stats.schedule, stats.snapshots) == ("binomial", snapshots)
        assert stats.peak_bytes <= budget
        assert stats.probe_steps == 2


def test_max_tape_bytes_refuses_before_running_when_nothing_fits(backend):
    step = differentiated(K.gauss_seidel, ("data", "b", "x"), ("x",), backend)
    args, n = _gs_problem()
    before = copies(args)
    x_bar = np.ones(n)
    for loop in (checkpointed(step, max_tape_bytes=8 * n),
                 checkpointed(step, schedule="binomial", snapshots=4, max_tape_bytes=4 * 8 * n)):
        with pytest.raises(adsrc.AdsrcError, match="max_tape_bytes"):
            loop.adjoint(*args, steps=STEPS, x_bar=x_bar)
        for got, want in zip(args, before):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(x_bar, np.ones(n))


def test_zero_and_one_steps(backend):
    case = CASES["jacobi_damped"]
    seeds = {"x_bar": np.random.default_rng(7).standard_normal(16)}
    for schedule, snapshots in (("binomial", 3), ("periodic", 2), ("store_all", None)):
        grads, final, stats = _adjoint(case, backend, 0, seeds, schedule=schedule,
                                       snapshots=snapshots)
        data_bar, b_bar, x_bar, alpha_bar = grads
        np.testing.assert_array_equal(x_bar, seeds["x_bar"])
        assert not data_bar.any() and not b_bar.any() and alpha_bar == 0.0
        for got, want in zip(final, case.args):
            np.testing.assert_array_equal(got, want)
        assert stats.forward_steps == stats.reverse_steps == stats.peak_bytes == 0
        grads, _, stats = _adjoint(case, backend, 1, seeds, schedule=schedule,
                                   snapshots=snapshots)
        want = differentiated(case.step, case.wrt, case.outputs, backend).adjoint(
            *copies(case.args), x_bar=seeds["x_bar"].copy())
        assert_gradients_close(grads, want, case.wrt)
        assert stats.forward_steps == stats.reverse_steps == 1


def test_bad_arguments_raise_clear_errors_and_change_nothing(backend):
    step = differentiated(K.gauss_seidel, ("data", "b", "x"), ("x",), backend)
    loop = checkpointed(step, schedule="binomial", snapshots=3)
    args, n = _gs_problem()
    before = copies(args)
    for steps, message in ((-1, ">= 0"), (2.0, "must be an int"), (True, "must be an int"),
                           ("3", "must be an int")):
        with pytest.raises(adsrc.ArgumentError, match=message):
            loop.adjoint(*args, steps=steps, x_bar=np.ones(n))
        with pytest.raises(adsrc.ArgumentError, match=message):
            loop(*args, steps=steps)
    with pytest.raises(adsrc.ArgumentError, match="x_bar"):
        loop.adjoint(*args, steps=3)
    with pytest.raises(adsrc.ArgumentError, match="shape"):
        loop.adjoint(*args, steps=3, x_bar=np.ones(n + 1))
    with pytest.raises(adsrc.ArgumentError, match="unexpected adjoint"):
        loop.adjoint(*args, steps=3, x_bar=np.ones(n), indices_bar=np.ones(n))
    for got, want in zip(args, before):
        np.testing.assert_array_equal(got, want)

    with pytest.raises(adsrc.AdsrcError, match="unknown schedule 'revolve'"):
        checkpointed(step, schedule="revolve", snapshots=3)
    for snapshots in (0, -2, None, 2.5):
        with pytest.raises(adsrc.AdsrcError, match="snapshots="):
            checkpointed(step, schedule="periodic", snapshots=snapshots)
    with pytest.raises(adsrc.AdsrcError, match="takes no snapshots"):
        checkpointed(step, schedule="store_all", snapshots=3)
    with pytest.raises(adsrc.AdsrcError, match="max_tape_bytes"):
        checkpointed(step, max_tape_bytes=-1)
    with pytest.raises(adsrc.AdsrcError, match="differentiated step kernel"):
        checkpointed(K.gauss_seidel, snapshots=3)

    reads = checkpointed(differentiated(S.reads_only, ("x",), None, backend), snapshots=2)
    with pytest.raises(adsrc.AdsrcError, match="writes none of its array arguments"):
        reads.adjoint(np.ones(3), np.ones(3), steps=4)
    returns = checkpointed(differentiated(K.branchy, ("x",), None, backend), snapshots=2)
    with pytest.raises(adsrc.AdsrcError, match="not its return value"):
        returns.adjoint(np.ones(3), np.zeros(3), 0.5, steps=4)


def _run_fake(actions, restores):
    """Run ``actions`` with a fake step whose state is its step number: every taped and untaped
    step must start from the state of its step, every reverse from the state after its steps, and
    the state must end as the forward sweep left it.  Returns (counts, final state)."""
    state = [np.zeros(1)]

    def advance(n0, n1):
        assert state[0][0] == n0
        state[0][0] = n1

    def record(n0, n1):
        advance(n0, n1)
        return list(range(n0, n1)), 8 * (n1 - n0)

    def reverse(tape, n1, n0):
        assert state[0][0] == n1 and tape == list(range(n0, n1))
        state[0][0] = n0 if restores else -1.0

    counts = run_schedule(actions, state, advance=advance, record=record, reverse=reverse,
                          restores=restores)
    return counts, state[0][0]


@pytest.mark.parametrize("schedule", ["binomial", "periodic", "store_all"])
def test_the_driver_runs_every_step_from_the_state_it_needs(schedule):
    """The schedule driver alone, with the fake step: revolve's counts are the optimum."""
    for steps in range(0, 16):
        for snapshots in (1, 2, 3, 5, 20):
            restores = not reverses_one_step_at_a_time(
                schedule_actions(schedule, steps, snapshots))
            assert restores == (schedule != "binomial" and steps > 1
                                and not (schedule == "periodic" and snapshots >= steps))
            counts, final = _run_fake(schedule_actions(schedule, steps, snapshots), restores)
            assert final == steps
            assert counts.taped_steps == counts.reverse_steps == steps
            if schedule == "binomial" and steps >= 2:
                s = min(snapshots, steps - 1)
                assert counts.forward_steps == steps + optimal_extra_steps(steps, s)
                assert counts.peak_snapshots <= s
            if schedule == "store_all":
                assert counts.forward_steps == steps and counts.peak_bytes == 8 * steps


def test_the_driver_refuses_a_multi_step_reverse_that_does_not_restore():
    with pytest.raises(AssertionError, match="restoring reverse sweep"):
        run_schedule(schedule_actions("store_all", 3), [np.zeros(1)],
                     advance=lambda n0, n1: None, record=lambda n0, n1: (None, 0),
                     reverse=lambda tape, n1, n0: None, restores=False)


# loops run until a predicate holds: until=, max_steps= (online schedules) ------------------------

def _online_binomial_executions(steps, snapshots):
    """Step executions of an online binomial schedule, from its definition: the forward sweep
    (``steps``), then each segment between checkpoints re-run by revolve with the checkpoints the
    earlier segments leave free.  The checkpoints are the multiples below ``steps`` of the
    smallest power of two p with ceil(steps / p) <= snapshots."""
    period = 1
    while -(-steps // period) > snapshots:
        period *= 2
    starts = list(range(0, steps, period))
    total = steps
    for index, start in enumerate(starts):
        length = min(start + period, steps) - start
        total += length + (optimal_extra_steps(length, min(snapshots - index, length - 1))
                           if length > 1 else 0)
    return total


@pytest.mark.parametrize("schedule", ["binomial", "periodic", "store_all"])
def test_the_driver_runs_online_schedules(schedule):
    """Online schedules on the fake step, for every trip count: the stopping test sees the
    state after each step, the loop stops where it says, at most ``snapshots`` checkpoints are
    held, and the step executions are those of the schedule's definition."""
    for steps in range(1, 24):
        for snapshots in (1, 2, 3, 5, 30):
            seen = []

            def stop(n):
                seen.append(n)
                return n == steps

            counts, final = _run_fake(online_actions(schedule, snapshots, stop),
                                      restores=schedule != "binomial")
            assert final == steps and seen == list(range(1, steps + 1))
            assert counts.taped_steps == counts.reverse_steps == steps
            if schedule == "store_all":
                assert counts.forward_steps == steps and counts.peak_snapshots == 0
                assert counts.peak_bytes == 8 * steps
                continue
            assert counts.peak_snapshots <= min(snapshots, steps)
            if schedule == "binomial":
                assert counts.forward_steps == _online_binomial_executions(steps, snapshots)
                assert counts.peak_tape_bytes == 8
            else:
                assert counts.forward_steps == 2 * steps


def _residual(indptr, indices, data, x, b):
    rows = np.repeat(np.arange(len(x)), np.diff(indptr))
    return np.linalg.norm(b - np.bincount(rows, weights=data * x[indices], minlength=len(x)))


# stopping tests of the cases, and the trip counts they give (printed residuals and minima:
# the step before the stop is well clear of the tolerance, so the finite differences below
# do not change the trip count)
UNTIL = {
    "gauss_seidel": (lambda indptr, indices, data, x, b, sweeps:
                     _residual(indptr, indices, data, x, b) < 2e-4, 13),
    "jacobi_damped": (lambda indptr, indices, data, dinv, x, b, alpha, iters:
                      _residual(indptr, indices, data, x, b) < 1e-2, 18),
    "reaction_diffusion": (lambda u, d, r, dt: u[1:-1].min() > 0.8, 9),
}
ONLINE = [("binomial", 3), ("binomial", 1), ("binomial", 40), ("periodic", 3),
          ("store_all", None)]


def _counting(predicate):
    """``predicate`` with a count of its calls, in ``.calls``."""
    def counted(*args):
        counted.calls += 1
        return predicate(*args)
    counted.calls = 0
    return counted


@pytest.mark.parametrize("name", list(UNTIL))
def test_until_gives_the_gradients_of_the_steps_it_ran(name, backend):
    case = CASES[name]
    predicate, trips = UNTIL[name]
    step = differentiated(case.step, case.wrt, case.outputs, backend)
    seeds = case.seeds(np.random.default_rng(13))
    primal_args = copies(case.args)
    until = _counting(predicate)
    checkpointed(step, snapshots=3)(*primal_args, until=until, max_steps=100)
    assert until.calls == trips
    want, _, _ = _adjoint(case, backend, trips, seeds, schedule="store_all")
    for schedule, snapshots in ONLINE:
        loop = checkpointed(step, schedule=schedule, snapshots=snapshots)
        args = copies(case.args)
        until = _counting(predicate)
        got = loop.adjoint(*args, until=until, max_steps=100,
                           **{k: v.copy() for k, v in seeds.items()})
        stats = loop.adjoint.last_stats
        assert (stats.steps, stats.stopped_by, until.calls) == (trips, "until", trips), schedule
        assert_gradients_close(got, want, case.wrt)
        for got_arg, want_arg in zip(args, primal_args):
            np.testing.assert_array_equal(got_arg, want_arg)
        assert stats.taped_steps == stats.reverse_steps == trips
        if schedule == "store_all":
            assert stats.forward_steps == trips and stats.peak_snapshots == 0
            continue
        assert stats.peak_snapshots <= snapshots
        if schedule == "binomial":
            # checkpoints plus the tape of one step (that of the step's own adjoint, recorded
            # alone by a one-step binomial loop)
            _, _, one = _adjoint(case, backend, 1, seeds, schedule="binomial", snapshots=1)
            assert stats.peak_tape_bytes == one.peak_bytes
            assert stats.peak_bytes <= snapshots * stats.state_bytes + one.peak_bytes
            assert stats.forward_steps == _online_binomial_executions(trips, snapshots)
        else:
            assert stats.forward_steps == 2 * trips


def test_until_stops_at_max_steps(backend):
    """A predicate that never holds: 1000 steps with 10 snapshots, the checkpoints of the forward
    sweep 128 steps apart; the gradients of steps=1000, in 5156 step executions (offline revolve,
    knowing the count, runs 4636)."""
    step = differentiated(S.tiny_step, ("x", "a"), ("x",), backend)
    x0, a, seed = np.array([0.3, -0.2]), 0.9, np.array([1.0, -0.5])
    loop = checkpointed(step, schedule="binomial", snapshots=10)
    never = _counting(lambda x, a: False)
    x = x0.copy()
    got = loop.adjoint(x, a, until=never, max_steps=1000, x_bar=seed.copy())
    stats = loop.adjoint.last_stats
    assert (stats.steps, stats.stopped_by, never.calls) == (1000, "max_steps", 1000)
    assert stats.forward_steps == _online_binomial_executions(1000, 10) == 5156
    assert stats.peak_snapshots == 10
    want = loop.adjoint(x0.copy(), a, steps=1000, x_bar=seed.copy())
    assert loop.adjoint.last_stats.forward_steps == 4636
    assert_gradients_close(got, want, ("x", "a"))
    primal = x0.copy()
    loop(primal, a, until=never, max_steps=1000)
    np.testing.assert_array_equal(x, primal)
    fixed = x0.copy()
    loop(fixed, a, steps=1000)
    np.testing.assert_array_equal(primal, fixed)


def test_until_agrees_with_finite_differences_of_the_loop_to_its_tolerance(backend):
    """The derivative of the loop as run: finite differences of the Gauss-Seidel loop run to its
    tolerance, whose trip count the small perturbations do not change."""
    case = CASES["gauss_seidel"]
    predicate, trips = UNTIL["gauss_seidel"]
    loop = checkpointed(differentiated(case.step, case.wrt, case.outputs, backend), snapshots=3)
    params = loop.step.params
    rng = np.random.default_rng(14)
    direction = {p: rng.standard_normal(np.shape(case.args[params.index(p)])) for p in case.wrt}
    weights = rng.standard_normal(len(case.args[params.index("x")]))

    def projected(t):
        args = list(copies(case.args))
        for p, v in direction.items():
            args[params.index(p)] = args[params.index(p)] + t * v
        until = _counting(predicate)
        loop(*args, until=until, max_steps=100)
        assert until.calls == trips
        return float(np.sum(weights * args[params.index("x")]))

    def central(h):
        return (projected(h) - projected(-h)) / (2 * h)

    h = 1e-4
    fd = (4.0 * central(h / 2) - central(h)) / 3.0
    grads = loop.adjoint(*copies(case.args), until=predicate, max_steps=100, x_bar=weights.copy())
    ad = sum(float(np.sum(direction[p] * g)) for p, g in zip(case.wrt, grads))
    assert ad == pytest.approx(fd, rel=1e-7, abs=1e-9)


def test_until_honours_max_tape_bytes(backend):
    """With until=, the budget must fit a loop of max_steps steps: store_all's tapes of 100
    steps do not, revolve's checkpoints and one step tape do; nothing fitting is refused before
    anything runs."""
    step = differentiated(K.gauss_seidel, ("data", "b", "x"), ("x",), backend)
    args, n = _gs_problem()
    predicate = UNTIL["gauss_seidel"][0]
    one = checkpointed(step, schedule="binomial", snapshots=1)
    one.adjoint(*copies(args), steps=1, x_bar=np.ones(n))
    step_bytes, state_bytes = one.adjoint.last_stats.peak_bytes, 8 * n
    budget = 4 * state_bytes + step_bytes
    loop = checkpointed(step, max_tape_bytes=budget)
    loop.adjoint(*copies(args), until=predicate, max_steps=100, x_bar=np.ones(n))
    stats = loop.adjoint.last_stats
    assert (stats.schedule, stats.snapshots, stats.steps) == ("binomial", 4, 13)
    assert stats.peak_snapshots == 4 and stats.peak_bytes <= budget
    before, x_bar = copies(args), np.ones(n)
    never = _counting(lambda *args: False)
    for loop, message in ((checkpointed(step, max_tape_bytes=state_bytes), "up to 100 steps"),
                          (checkpointed(step, schedule="store_all", max_tape_bytes=50 * step_bytes),
                           "store_all schedule needs")):
        with pytest.raises(adsrc.AdsrcError, match=message):
            loop.adjoint(*args, until=never, max_steps=100, x_bar=x_bar)
    assert never.calls == 0
    for got, want in zip(args, before):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(x_bar, np.ones(n))


def test_a_predicate_giving_no_truth_value_is_named(backend):
    """An array of several truths (NumPy would raise its own 'ambiguous' ValueError)."""
    step = differentiated(K.gauss_seidel, ("data", "b", "x"), ("x",), backend)
    args, _ = _gs_problem()
    with pytest.raises(adsrc.ArgumentError, match="until= must return a truth value, got "
                                                  "ndarray of 3 values"):
        checkpointed(step, snapshots=2)(*args, until=lambda *args: np.ones(3) > 0, max_steps=5)


@pytest.mark.parametrize("schedule", ["binomial", "periodic", "store_all"])
def test_a_predicate_that_fails_after_steps_ran_leaves_the_arguments_as_given(schedule,
                                                                            backend):
    """The predicate is the caller's code, first asked after a step: one that raises, or
    answers with an array, after the third step left x as three sweeps had made it."""
    step = differentiated(K.gauss_seidel, ("data", "b", "x"), ("x",), backend)
    loop = checkpointed(step, schedule=schedule,
                        **({} if schedule == "store_all" else {"snapshots": 2}))
    args, n = _gs_problem()
    before, x_bar = copies(args), np.ones(n)
    asked = _counting(lambda *args: False)

    def third_fails(*args):
        asked(*args)
        if asked.calls == 3:
            raise ZeroDivisionError("the caller's predicate")
        return False

    def third_is_an_array(*args):
        asked(*args)
        return np.ones(3) > 0 if asked.calls == 3 else False

    for until, error in ((third_fails, ZeroDivisionError),
                         (third_is_an_array, adsrc.ArgumentError)):
        asked.calls = 0
        with pytest.raises(error):
            loop.adjoint(*args, until=until, max_steps=10, x_bar=x_bar)
        assert asked.calls == 3
        for got, want in zip(args, before):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(x_bar, np.ones(n))


def test_bad_trip_arguments_raise_argument_errors_and_change_nothing(backend):
    step = differentiated(K.gauss_seidel, ("data", "b", "x"), ("x",), backend)
    loop = checkpointed(step, schedule="binomial", snapshots=3)
    args, n = _gs_problem()
    before, x_bar = copies(args), np.ones(n)
    never = _counting(lambda *args: False)
    for trip, message in ((dict(), "pass steps= .* or until="),
                          (dict(steps=3, until=never, max_steps=5), "not both"),
                          (dict(steps=3, max_steps=5), "with steps= do not pass it"),
                          (dict(until=never), "needs max_steps="),
                          (dict(until=3, max_steps=5), "callable"),
                          (dict(until=never, max_steps=0), "max_steps must be an int >= 1"),
                          (dict(until=never, max_steps=2.5), "max_steps must be an int >= 1"),
                          (dict(until=never, max_steps=True), "max_steps must be an int >= 1"),
                          (dict(until=lambda x: False, max_steps=5),
                           "until= is called with the step's 6 arguments")):
        with pytest.raises(adsrc.ArgumentError, match=message):
            loop.adjoint(*args, x_bar=x_bar, **trip)
        with pytest.raises(adsrc.ArgumentError, match=message):
            loop(*args, **trip)
    assert never.calls == 0
    for got, want in zip(args, before):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(x_bar, np.ones(n))

