"""Checkpointed loops written inside a kernel: ``for it in adsrc.checkpointed(range(n), ...)``.

The kernels are in tests/checkpointed_loop_kernels.py.  Checked here, on both backends:

* with every schedule (binomial, periodic, store_all), the adjoint equals, to 1e-12 relative, the
  plain adjoint (every step taped) of the same kernel without the marker: Gauss-Seidel with the
  matrix values active, damped Jacobi with its weight active (the shipped jacobi_damped, with its
  residual array allocated before the loop), explicit reaction-diffusion steps whose source term
  reads the loop variable, and a heavy-ball iteration whose arrays allocated before the loop
  carry values from step to step and out of the loop (one a copy of an argument, whose adjoint
  comes only through it) or are read by every step; the arrays end as the kernel leaves them;
  the steps run as many times as the schedule says, and a checkpoint holds the arrays allocated
  before the loop that it writes;
* statements before and after the loop and a return value: adsrc.grad and value_and_grad equal
  those of the kernel without the marker, and adsrc.check_grads (finite differences) passes;
* a loop run until a test holds (its body ends with 'if test: break', at most n steps): the
  value, gradients and arrays equal those of the kernel without the marker, with every schedule,
  whether the test holds, never holds or no step runs, and the stats count the steps a Python
  run counts; finite differences agree;
* the tool's counts: 1000 steps with 10 snapshots run 1000 + optimal_extra_steps(1000, 10) =
  4636 step executions and hold at most 10 checkpoints (of the state: an argument and an array
  allocated before the loop); each schedule's peak of checkpoints;
* tangent mode runs the loop over its range: the tangent of the kernel without the marker, which
  central differences and the dot-product test against the checkpointed adjoint confirm;
* every refused form raises UnsupportedError at its line (file, line and message checked), and
  so does a marked loop in a called kernel (Hessian-vector products: test_checkpointed_hessians);
* bad arguments raise ArgumentError and change nothing; no steps; the generated source.
"""

import inspect
import math

import numpy as np
import pytest
from checkpoint_schedules.multistage import optimal_extra_steps

import adsrc
import checkpointed_loop_kernels as K
from corpus.problems import diagonal_of, perturb_data, poisson2d_csr
from differentiated import assert_gradients_close, copies, differentiated

pytestmark = pytest.mark.usefixtures("backend")   # every test on both backends

STEPS = 7


def _csr(rng):
    indptr, indices, data = poisson2d_csr(4)
    return indptr, indices, perturb_data(rng, indptr, indices, data)


def _gauss_seidel():
    rng = np.random.default_rng(1)
    indptr, indices, data = _csr(rng)
    n = len(indptr) - 1
    return ((indptr, indices, data, rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), STEPS),
            ("data", "b", "x"), ("x",))


def _jacobi():
    rng = np.random.default_rng(2)
    indptr, indices, data = _csr(rng)
    n = len(indptr) - 1
    dinv = 1.0 / diagonal_of(indptr, indices, data)
    return ((indptr, indices, data, dinv, rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), 0.8,
             STEPS), ("data", "b", "x", "alpha"), ("x",))


def _reaction_diffusion():
    rng = np.random.default_rng(3)
    return ((rng.uniform(0.1, 0.9, 12), rng.uniform(0.1, 0.3, 12), 2.0, 0.2, STEPS),
            ("u", "d", "r", "dt"), ("u",))


def _heavy_ball():
    rng = np.random.default_rng(6)
    return ((rng.uniform(-1, 1, 6), rng.uniform(0.5, 1.5, 6), 0.7, STEPS),
            ("u", "c", "beta"), ("u",))


FAMILIES = {"gauss_seidel": _gauss_seidel(), "jacobi": _jacobi(),
            "reaction_diffusion": _reaction_diffusion(), "heavy_ball": _heavy_ball()}
# float64 values in one checkpoint: the arguments the loop writes (x, u) and the arrays allocated
# before the loop that it writes (Jacobi's residual; heavy ball's v, s and old)
STATE_VALUES = {"gauss_seidel": 16, "jacobi": 2 * 16, "reaction_diffusion": 12,
                "heavy_ball": 4 * 6}
SCHEDULES = {"binomial": 3, "periodic": 4, "store_all": None}      # as the kernels mark them


def _seeds(fn, args, outputs, rng):
    params = list(inspect.signature(fn).parameters)
    return {out + "_bar": rng.standard_normal(np.shape(args[params.index(out)]))
            for out in outputs}


def _step_executions(schedule, steps, snapshots):
    """Step executions, by each schedule's definition: revolve's optimum; periodic re-runs each
    segment but the last, which it tapes at once; store_all runs each step once."""
    if schedule == "binomial":
        return steps + optimal_extra_steps(steps, snapshots)
    if schedule == "periodic":
        period = math.ceil(steps / snapshots)
        return steps + period * (math.ceil(steps / period) - 1)
    return steps


def _peak_checkpoints(schedule, steps, snapshots):
    """Checkpoints held at once, by each schedule's definition."""
    if schedule == "binomial":
        return min(snapshots, steps - 1)
    if schedule == "periodic":       # one at the start of each segment but the last
        return math.ceil(steps / math.ceil(steps / snapshots)) - 1
    return 0


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_schedule_gives_the_gradient_of_the_loop_without_marker(family, schedule,
                                                                      backend):
    args, wrt, outputs = FAMILIES[family]
    plain = getattr(K, f"{family}_plain")
    marked = getattr(K, f"{family}_{schedule}")
    seeds = _seeds(plain, args, outputs, np.random.default_rng(10))
    want_args = copies(args)
    want = differentiated(plain, wrt, outputs, backend).adjoint(
        *want_args, **{k: v.copy() for k, v in seeds.items()})
    f = differentiated(marked, wrt, outputs, backend)
    got_args = copies(args)
    got = f.adjoint(*got_args, **{k: v.copy() for k, v in seeds.items()})
    assert_gradients_close(got, want, wrt)
    for got_arg, want_arg in zip(got_args, want_args):     # as the kernel leaves them
        np.testing.assert_array_equal(got_arg, want_arg)
    stats = f.adjoint.last_stats
    assert (stats.schedule, stats.snapshots, stats.steps) == (schedule, SCHEDULES[schedule],
                                                              STEPS)
    assert stats.taped_steps == stats.reverse_steps == STEPS
    assert stats.forward_steps == _step_executions(schedule, STEPS, SCHEDULES[schedule])
    assert stats.peak_snapshots == _peak_checkpoints(schedule, STEPS, SCHEDULES[schedule])
    assert stats.state_bytes == 8 * STATE_VALUES[family]
    primal_args = copies(args)
    f.primal(*primal_args)                  # the compiled kernel
    python_args = copies(args)
    marked(*python_args)                    # the kernel as Python runs it
    for compiled, python, want_arg in zip(primal_args, python_args, want_args):
        np.testing.assert_allclose(compiled, python, rtol=1e-14, atol=1e-300)
        np.testing.assert_allclose(compiled, want_arg, rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_agrees_with_finite_differences(family, backend):
    args, wrt, outputs = FAMILIES[family]
    adsrc.check_grads(getattr(K, f"{family}_binomial"), list(args), wrt, outputs,
                      backend=backend)


def _many_sweeps_args():
    rng = np.random.default_rng(4)
    indptr, indices, data = _csr(rng)
    n = len(indptr) - 1
    return data, indices, indptr, rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), STEPS


def test_statements_before_and_after_the_loop_and_a_return_value(backend):
    """many_sweeps: 'n = len(b)' and an active 'w = 0.5 * data[0]' before the loop, an update of
    x and 'return np.dot(x, x) + w * b[0]' after it."""
    args = _many_sweeps_args()
    wrt = ("data", "b", "x")
    value, grads = adsrc.value_and_grad(K.many_sweeps, wrt, backend=backend)(*copies(args))
    want_value, want = adsrc.value_and_grad(K.many_sweeps_plain, wrt, backend=backend)(
        *copies(args))
    assert value == pytest.approx(want_value, rel=1e-14)
    assert_gradients_close(grads, want, wrt)
    assert_gradients_close(adsrc.grad(K.many_sweeps, wrt, backend=backend)(*copies(args)),
                           want, wrt)
    report = adsrc.check_grads(K.many_sweeps, list(args), wrt, backend=backend)
    assert report.max_error < 1e-7
    f = differentiated(K.many_sweeps, wrt, None, backend)
    got_args, want_args = copies(args), copies(args)
    assert f.primal(*got_args) == pytest.approx(K.many_sweeps_plain(*want_args), rel=1e-14)
    for got, want_arg in zip(got_args, want_args):
        np.testing.assert_allclose(got, want_arg, rtol=1e-14, atol=1e-300)


def test_no_steps(backend):
    args = _many_sweeps_args()[:-1] + (0,)
    wrt = ("data", "b", "x")
    value, grads = adsrc.value_and_grad(K.many_sweeps, wrt, backend=backend)(*copies(args))
    want_value, want = adsrc.value_and_grad(K.many_sweeps_plain, wrt, backend=backend)(
        *copies(args))
    assert value == pytest.approx(want_value, rel=1e-14)
    assert_gradients_close(grads, want, wrt)
    f = differentiated(K.gauss_seidel_binomial, ("data", "b", "x"), ("x",), backend)
    args = FAMILIES["gauss_seidel"][0][:-1] + (0,)
    seed = np.random.default_rng(5).standard_normal(len(args[3]))
    data_bar, b_bar, x_bar = f.adjoint(*copies(args), x_bar=seed.copy())
    np.testing.assert_array_equal(x_bar, seed)
    assert not data_bar.any() and not b_bar.any()
    assert f.adjoint.last_stats.forward_steps == 0


def test_revolve_runs_the_optimal_number_of_steps(backend):
    """1000 steps, 10 snapshots: 1000 + optimal_extra_steps(1000, 10) = 4636 step executions,
    every step taped and reversed once, at most 10 checkpoints of the state (x, 2 floats, and v,
    1 float allocated before the loop) held; the gradient is the unmarked kernel's."""
    x0, seed = np.array([0.3, -0.2]), np.array([1.0, -0.5])
    f = differentiated(K.tiny, ("x", "a"), ("x",), backend)
    got = f.adjoint(x0.copy(), 0.9, 1000, x_bar=seed.copy())
    stats = f.adjoint.last_stats
    assert optimal_extra_steps(1000, 10) == 3636
    assert stats.forward_steps == 1000 + 3636 == 4636
    assert stats.taped_steps == stats.reverse_steps == 1000
    assert stats.peak_snapshots == 10 and stats.state_bytes == 3 * 8
    assert stats.peak_bytes <= 10 * stats.state_bytes + stats.peak_tape_bytes
    want = differentiated(K.tiny_plain, ("x", "a"), ("x",), backend).adjoint(x0.copy(), 0.9, 1000,
                                                                      x_bar=seed.copy())
    assert_gradients_close(got, want, ("x", "a"))
    assert np.all(got[0] != 0.0) and got[1] != 0.0         # a gradient, not zeros


def _marked_line(kernel):
    lines, first = inspect.getsourcelines(kernel)
    marked = [first + k for k, text in enumerate(lines) if "# <-" in text]
    assert len(marked) == 1, kernel.__name__
    return marked[0]


REFUSED = [
    (K.nested_marker, "must be a statement of the kernel itself, not nested"),
    (K.two_markers, "one checkpointed loop; this is a second one (the first is at line"),
    (K.range_with_start, "range(n) with one argument"),
    (K.trips_from_expression, "number of steps of a checkpointed loop must be known"),
    (K.snapshots_from_argument, "snapshots= of a checkpointed loop must be a constant"),
    (K.no_snapshots, "the binomial schedule needs snapshots="),
    (K.unknown_schedule, "unknown schedule 'revolve'"),
    (K.array_written_before, "before a checkpointed loop a kernel may only assign names"),
    (K.scalar_carried, "assigns 's', a name assigned before the loop: a value carried from "
                       "one step to the next must be in an array"),
    (K.scalar_read_after, "'last' is read here, which the checkpointed loop assigns: only "
                          "arrays, passed to the kernel or allocated before the loop, carry "
                          "values out"),
    (K.read_before_assigned, "'prev' is read here before the loop body assigns it"),
    (K.break_out, "'break' in a checkpointed loop: its steps must be those of range(n), or "
                  "end at an 'if <test>: break' that is the last statement of its body"),
    (K.break_or_else, "'break' in a checkpointed loop"),
    (K.continue_step, "'continue' in a checkpointed loop"),
    (K.array_bound_before, "'work' is an array, bound or updated before a checkpointed loop "
                           "by a statement that adsrc repeats in each step"),
    (K.allocated_then_updated, "'work' is bound here and already at line"),
    (K.allocated_over_argument, "'x' is an argument of the kernel: give the array allocated"),
    (K.allocated_state_read_before, "reads 'work', which the loop writes"),
    (K.state_read_before, "reads 'x', which the loop writes"),
    (K.called_marked, "a checkpointed loop is supported only at the top level of the kernel "
                      "given to adsrc.differentiate"),
]


# a loop run until a test holds ('if test: break' ends its body) --------------------------------

TO_TOLERANCE_WRT = ("data", "b", "x")
# (tol, sweeps): the test holds after some sweeps; it never holds; no sweeps at all
TOLERANCES = [(1e-3, 40), (1e-12, 7), (1e-3, 0)]


def _to_tolerance_args(tol, sweeps):
    rng = np.random.default_rng(6)
    indptr, indices, data = _csr(rng)
    n = len(indptr) - 1
    return indptr, indices, data, rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), tol, sweeps


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("tol, sweeps", TOLERANCES)
def test_a_loop_run_until_a_test_holds(schedule, tol, sweeps, backend):
    """A marked loop whose body ends with 'if rr <= tol * tol: break' stops where the kernel
    does: the value, the gradients and the arrays the kernel leaves equal those of the kernel
    without the marker, and the stats count the sweeps a Python run of the step counts."""
    args = _to_tolerance_args(tol, sweeps)
    f = differentiated(getattr(K, f"to_tolerance_{schedule}"), TO_TOLERANCE_WRT, None, backend)
    got_args, want_args = list(copies(args)), list(copies(args))
    value, grads = adsrc.value_and_grad(f, TO_TOLERANCE_WRT)(*got_args)
    want_value, want = adsrc.value_and_grad(K.to_tolerance_plain, TO_TOLERANCE_WRT,
                                            backend=backend)(*want_args)
    assert value == pytest.approx(want_value, rel=1e-14)
    assert_gradients_close(grads, want, TO_TOLERANCE_WRT)
    np.testing.assert_array_equal(got_args[3], want_args[3])
    assert f.primal(*copies(args)) == pytest.approx(want_value, rel=1e-14)
    f.adjoint(*copies(args))
    stats = f.adjoint.last_stats
    assert (stats.steps, stats.stopped_by) == K.sweeps_to_tolerance(*copies(args))
    assert stats.reverse_steps == stats.steps


def test_a_loop_run_until_a_test_holds_matches_finite_differences_and_tangents(backend):
    """Central differences (check_grads) and the dot-product test of the checkpointed adjoint
    against tangent mode, which runs the loop with its break, agree."""
    args = _to_tolerance_args(1e-3, 40)
    assert 0 < K.sweeps_to_tolerance(*copies(args))[0] < 40
    report = adsrc.check_grads(K.to_tolerance_binomial, list(args), TO_TOLERANCE_WRT,
                               backend=backend)
    assert report.max_error < 1e-7
    f = differentiated(K.to_tolerance_binomial, TO_TOLERANCE_WRT, None, backend)
    rng = np.random.default_rng(12)
    dots = {name + "_dot": rng.standard_normal(args[2].size if name == "data" else args[3].size)
            for name in TO_TOLERANCE_WRT}
    (j_v,) = f.tangent(*copies(args), **copies_of(dots))
    grads = f.adjoint(*copies(args))
    v_jt = sum(float(np.dot(dots[name + "_dot"], grad))
               for name, grad in zip(TO_TOLERANCE_WRT, grads))
    assert j_v == pytest.approx(v_jt, rel=1e-11)


@pytest.mark.parametrize("kernel,message", REFUSED, ids=[k.__name__ for k, _ in REFUSED])
def test_refused_forms_raise_located_errors(kernel, message, backend):
    params = list(inspect.signature(kernel).parameters)
    args = [np.array([0.5, 0.25]) if p == "x" else 3 for p in params]
    before = copies(args)
    with pytest.raises(adsrc.UnsupportedError) as raised:
        adsrc.differentiate(kernel, wrt=("x",), outputs=("x",), backend=backend).adjoint(
            *args, x_bar=np.ones(2))
    error = raised.value
    where = K.two_steps if kernel is K.called_marked else kernel      # the marked loop's kernel
    assert (error.filename, error.line) == (inspect.getsourcefile(K), _marked_line(where))
    assert message in error.message, error.message
    for got, want in zip(args, before):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("family", FAMILIES)
def test_tangent_mode_runs_the_loop_over_its_range(family, backend):
    """f.tangent of a kernel with a checkpointed loop is that of the kernel without the marker;
    it agrees with central differences of the primal, and with the checkpointed adjoint by the
    dot-product test <J v, w> = <v, J^T w>; it mutates the arguments as the kernel does."""
    args, wrt, outputs = FAMILIES[family]
    plain = getattr(K, f"{family}_plain")
    marked = getattr(K, f"{family}_binomial")
    params = list(inspect.signature(plain).parameters)
    rng = np.random.default_rng(11)
    dots = {name + "_dot": rng.standard_normal(np.shape(args[params.index(name)]))
            if isinstance(args[params.index(name)], np.ndarray) else float(rng.standard_normal())
            for name in wrt}
    f = differentiated(marked, wrt, outputs, backend)
    got_args = copies(args)
    got = f.tangent(*got_args, **copies_of(dots))
    want_args = copies(args)
    want = differentiated(plain, wrt, outputs, backend).tangent(*want_args, **copies_of(dots))
    assert_gradients_close(got, want, outputs)
    for got_arg, want_arg in zip(got_args, want_args):
        np.testing.assert_array_equal(got_arg, want_arg)

    def outputs_at(step):
        moved = [arg + step * dots[name + "_dot"] if name in wrt else arg
                 for name, arg in zip(params, copies(args))]
        marked(*moved)
        return [moved[params.index(out)] for out in outputs]

    step = 1e-6
    central = [(p - m) / (2 * step) for p, m in zip(outputs_at(step), outputs_at(-step))]
    for tangent, difference in zip(got, central):
        np.testing.assert_allclose(tangent, difference, rtol=1e-6, atol=1e-8)
    seeds = _seeds(marked, args, outputs, rng)
    bars = f.adjoint(*copies(args), **copies_of(seeds))
    j_v_w = sum(float(np.vdot(tangent, seeds[out + "_bar"])) for tangent, out in zip(got, outputs))
    v_jt_w = sum(float(np.vdot(dots[name + "_dot"], bar)) for name, bar in zip(wrt, bars))
    assert j_v_w == pytest.approx(v_jt_w, rel=1e-11)


def test_tangent_mode_refuses_a_step_that_a_plain_loop_cannot_run(backend):
    """step_allocates_by_trip allocates an array of the trip's size in its loop's body: a
    checkpointed step may (it is a kernel of its own), a plain loop may not, as it allocates
    its arrays once, before the loop; the refusal says that tangent mode runs the loop as a
    plain loop, at the allocation's line, and changes nothing."""
    args = (np.linspace(0.5, 1.5, 6), 4)
    f = differentiated(K.step_allocates_by_trip, ("x",), ("x",), backend)
    before = copies(args)
    with pytest.raises(adsrc.UnsupportedError) as raised:
        f.tangent(*args, x_dot=np.ones(6))
    assert raised.value.line == _marked_line(K.step_allocates_by_trip)
    assert raised.value.message.startswith("tangent mode runs the checkpointed loop as a plain "
                                           "loop over its range, where this is refused: the "
                                           "local array 'head' is first allocated inside a loop")
    for got, want in zip(args, before):
        np.testing.assert_array_equal(got, want)


def copies_of(values):
    return {key: np.array(value, copy=True) if isinstance(value, np.ndarray) else value
            for key, value in values.items()}


def test_bad_arguments_raise_argument_errors_and_change_nothing(backend):
    args, wrt, outputs = FAMILIES["gauss_seidel"]
    f = differentiated(K.gauss_seidel_binomial, wrt, outputs, backend)
    n = len(args[3])
    for call_args, bars, message in (
            (args, {}, "pass x_bar="),
            (args, {"x_bar": np.ones(n), "indices_bar": np.ones(n)}, "unexpected adjoint"),
            (args, {"x_bar": np.ones(n + 1)}, "shape"),
            (args[:-1] + (2.0,), {"x_bar": np.ones(n)}, "'sweeps' is the number of steps")):
        given = copies(call_args)
        with pytest.raises(adsrc.ArgumentError, match=message):
            f.adjoint(*given, **bars)
        for got, want in zip(given, call_args):
            np.testing.assert_array_equal(got, want)


def test_the_source_shows_the_step_and_what_follows_the_loop(backend):
    f = differentiated(K.many_sweeps, ("data", "b", "x"), None, backend)
    source = f.source("adjoint", args=_many_sweeps_args())
    assert "many_sweeps_loop_body__rev" in source and "many_sweeps_after_loop__rev" in source
