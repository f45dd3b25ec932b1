"""``checkpointed``: memory-bounded adjoints of a loop that runs a differentiated step kernel.

``adsrc.checkpointed(step, schedule="binomial", snapshots=10)`` wraps a differentiated *step*
(one sweep, one time step).  Calling it with ``steps=N`` runs the step N times; its ``adjoint``
has the semantics of ``Differentiable.adjoint`` for a kernel that calls the step N times with the
same arguments, but holds at most ``snapshots`` checkpoints of the state (the arrays the step
writes) and recomputes the rest, instead of taping all N steps.  The schedules and their driver
are in :mod:`adsrc.runtime.checkpointing`.

A loop whose number of steps is known only when it ends (a solver run to a tolerance) is called
with ``until=predicate, max_steps=M`` instead of ``steps=N``: the predicate is tested on the
arguments after each step, and the schedule is made online, as the loop runs
(:func:`adsrc.runtime.checkpointing.online_actions`).

Which adjoint of the step runs: revolve (``"binomial"``) reverses one step at a time, right after
recording it, and puts the state back from a checkpoint before it is used again, so the step's own
adjoint serves.  ``"periodic"`` and ``"store_all"`` reverse several steps from one tape, so each
step's reverse sweep must hand the next one the state it ran from: they use the variant of the
step's adjoint that puts back every array it overwrites (the one adsrc generates for a kernel
called from another).

Hessian-vector products of a kernel with a checkpointed loop run the tangent of this adjoint
(forward over reverse) under the same schedules: the steps run by the step's tangent and the
tangent of its adjoint, and a checkpoint holds the tangents of the state beside the state (see
``_SecondOrderSweeps``).
"""

import functools
import inspect
import warnings
from dataclasses import dataclass

import numpy as np

from adsrc.api import _LOADED, Differentiable
from adsrc.errors import AdsrcError, ArgumentError
from adsrc.pipeline import ADJOINT, HVP, RETURN_OUTPUT, TANGENT, Generator, Key
from adsrc.runtime.arguments import signature_of
from adsrc.runtime.checkpointing import (SCHEDULES, online_actions, predicted_peak_bytes,
                                         reverses_one_step_at_a_time, run_schedule,
                                         schedule_actions)
from adsrc.runtime.tape import BYTES_PER_VALUE


@dataclass(frozen=True)
class CheckpointStats:
    """What one ``loop.adjoint(...)`` call did.

    ``schedule``/``snapshots``: the schedule run (the one ``max_tape_bytes=`` picked, if so);
    ``forward_steps``: step executions, taped and untaped (``steps`` for store_all, more when
    steps are recomputed); ``taped_steps``: those recorded on a tape; ``reverse_steps``: step
    reverse sweeps; ``peak_snapshots``: most checkpoints held at once; ``peak_bytes``: most bytes
    held at once by checkpoints and step tapes together, ``peak_tape_bytes`` by step tapes alone;
    ``state_bytes``: the size of one checkpoint (the arrays the step writes).  One more copy of
    the state, the final one, is kept from the end of the forward sweep to the end of the call,
    to leave the arrays as the primal does; it is not in ``peak_bytes``.
    ``tape_floats``/``tape_ints``: values pushed on all step tapes; ``probe_steps``: taped steps
    run on copies of the state to measure a step tape for ``max_tape_bytes=`` (not counted in
    ``forward_steps``).  ``steps``: the steps the loop ran (with ``until=``, the trip count);
    ``stopped_by``: with ``until=``, ``"until"`` if the predicate stopped the loop, ``"max_steps"``
    if it never held; None with ``steps=``.
    """

    schedule: str
    snapshots: int | None
    steps: int
    forward_steps: int
    taped_steps: int
    reverse_steps: int
    peak_snapshots: int
    peak_bytes: int
    peak_tape_bytes: int
    state_bytes: int
    tape_floats: int
    tape_ints: int
    probe_steps: int
    stopped_by: str | None = None


def step_returns_stop(*args):
    """The ``until=`` of a loop whose step kernel returns whether the loop ends after it (a loop
    marked inside a kernel whose body ends with ``if test: break``, see
    :mod:`adsrc.checkpointed_kernels`): the driver tests the value the step returned, and never
    calls this."""
    raise AssertionError("adsrc internal error: step_returns_stop is a marker, not a predicate")


def _ends_after(until, args, returned):
    """Whether the loop ends after a step that returned ``returned``."""
    if until is step_returns_stop:
        return bool(returned)
    verdict = until(*args)
    if np.size(verdict) != 1:
        raise ArgumentError(f"until= must return a truth value, got {type(verdict).__name__} "
                            f"of {np.size(verdict)} values (asked after a step)")
    return bool(verdict)


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_trip(name, args, steps, until, max_steps):
    """``(steps, until, max_steps)`` of a call with ``args``, checked: exactly one of ``steps=``
    (a known number of steps) and ``until=`` (a stopping test, which must take the arguments),
    and ``max_steps=`` with ``until=`` only.

    ``max_steps`` is required with ``until``: a tolerance that is never met would otherwise run
    forever, and ``max_tape_bytes=`` can be checked before the loop runs only against its longest
    run."""
    if steps is None and until is None:
        raise ArgumentError(f"{name}: pass steps= (the number of steps to run) or until= (a "
                            "predicate of the arguments that stops the loop) with max_steps=")
    if steps is not None and until is not None:
        raise ArgumentError(f"{name}: pass either steps= or until=, not both")
    if until is None:
        if max_steps is not None:
            raise ArgumentError(f"{name}: max_steps= bounds a loop run with until=; with steps= "
                                "do not pass it")
        if not _is_int(steps):
            raise ArgumentError(f"{name}: steps must be an int (the number of steps to run), "
                                f"got {type(steps).__name__}")
        if steps < 0:
            raise ArgumentError(f"{name}: steps must be >= 0, got {steps}")
        return int(steps), None, None
    if not callable(until):
        raise ArgumentError(f"{name}: until= must be a callable predicate of the step's "
                            f"arguments, got {type(until).__name__}")
    try:
        inspect.signature(until).bind(*args)
    except TypeError as error:
        raise ArgumentError(f"{name}: until= is called with the step's {len(args)} arguments "
                            f"after each step, and cannot take them ({error})") from None
    except ValueError:      # no signature to read (some builtins): its first call will tell
        pass
    if max_steps is None:
        raise ArgumentError(f"{name}: until= needs max_steps=, the most steps to run if the "
                            "predicate never holds")
    if not _is_int(max_steps) or max_steps < 1:
        raise ArgumentError(f"{name}: max_steps must be an int >= 1, got {max_steps!r}")
    return None, until, int(max_steps)


def checked_options(name, schedule, snapshots, max_tape_bytes):
    """``(schedule, snapshots, max_tape_bytes)`` of a checkpointed loop, checked (``name``: the
    kernel's, for the messages); the schedule is binomial unless ``max_tape_bytes`` picks it."""
    if schedule is not None and schedule not in SCHEDULES:
        raise AdsrcError(f"{name}: unknown schedule {schedule!r} (available: "
                         f"{', '.join(map(repr, SCHEDULES))})")
    if max_tape_bytes is not None and (not _is_int(max_tape_bytes) or max_tape_bytes < 0):
        raise AdsrcError(f"{name}: max_tape_bytes must be a non-negative int, got "
                         f"{max_tape_bytes!r}")
    if schedule is None and max_tape_bytes is None:
        schedule = "binomial"
    if schedule is None:
        if snapshots is not None:
            raise AdsrcError(f"{name}: max_tape_bytes= without schedule= picks the schedule "
                             "and the number of snapshots; do not pass snapshots=")
    elif schedule == "store_all":
        if snapshots is not None:
            raise AdsrcError(f"{name}: the store_all schedule takes no snapshots=")
    elif not _is_int(snapshots) or snapshots < 1:
        raise AdsrcError(f"{name}: the {schedule} schedule needs snapshots=, the number of "
                         f"checkpoints to hold, an int >= 1 (got {snapshots!r})")
    return (schedule, None if snapshots is None else int(snapshots),
            None if max_tape_bytes is None else int(max_tape_bytes))


class LoopAdjoint:
    """``loop.adjoint``: callable, with ``last_stats`` (:class:`CheckpointStats`) of the last
    call."""

    def __init__(self, owner):
        self._owner = owner
        self.last_stats = None

    def __call__(self, *args, steps=None, until=None, max_steps=None, **bars):
        results, stats = self._owner._run(args, bars, steps, until, max_steps)
        self.last_stats = stats
        return results


class Checkpointed:
    """A differentiated step kernel run ``steps`` times, with a checkpointed adjoint."""

    def __init__(self, step, schedule=None, snapshots=None, max_tape_bytes=None, counter=None):
        if not isinstance(step, Differentiable):
            raise AdsrcError("checkpointed() takes a differentiated step kernel: "
                             "adsrc.checkpointed(adsrc.differentiate(step, wrt=..., outputs=...), "
                             "...), or range(n) as the iterable of a loop inside a kernel")
        self.schedule, self.snapshots, self.max_tape_bytes = checked_options(
            step.fn.__name__, schedule, snapshots, max_tape_bytes)
        self.step = step
        # the position of the step's parameter that receives the step number (0, 1, ...): the
        # loop variable of a checkpointed loop written inside a kernel (adsrc.checkpointed_kernels)
        self._counter = None if counter is None else step.params.index(counter)
        functools.update_wrapper(self, step.fn)
        self.adjoint = LoopAdjoint(self)
        self._restoring = {}

    def __repr__(self):
        how = (f"schedule={self.schedule!r}, snapshots={self.snapshots}"
               if self.max_tape_bytes is None else f"max_tape_bytes={self.max_tape_bytes}")
        return f"<checkpointed {self.step.fn.__name__}: {how}>"

    def __call__(self, *args, steps=None, until=None, max_steps=None):
        """The primal: the step kernel, compiled by the step's backend, run ``steps`` times, or
        until ``until(*args)`` is true after a step, or ``max_steps`` times.  Returns what the
        last step returns (None for no steps)."""
        steps, until, max_steps = _check_trip(self.step.fn.__name__, args, steps, until,
                                               max_steps)
        compiled = self.step._checked_primal(args)
        value = None
        for n in range(max_steps if until is not None else steps):
            value = compiled.primal(*self._at(args, n))
            if until is not None and _ends_after(until, args, value):
                break
        return value

    def _at(self, args, n):
        """The arguments of step ``n``: ``args``, with ``n`` for the step's counter if it has
        one."""
        if self._counter is None:
            return args
        args = list(args)
        args[self._counter] = n
        return args

    # the adjoint --------------------------------------------------------------------------------

    def _step_compiled(self, args, mode=ADJOINT):
        step = self.step
        name = step.fn.__name__
        signature = signature_of(name, step.params, args)
        compiled = step._compile(signature, mode=mode)
        entry = compiled.entry
        if not entry.written_arrays:
            raise AdsrcError(f"{name}: checkpointed() needs a step kernel that updates arrays in "
                             f"place (the state carried from one step to the next), but {name} "
                             "writes none of its array arguments")
        if RETURN_OUTPUT in entry.key.outputs:
            raise AdsrcError(f"{name}: the outputs of a checkpointed step kernel must be arrays "
                             "it writes, not its return value (pass outputs=(...) to "
                             "differentiate)")
        return signature, compiled

    def _restoring_variant(self, signature, plain, mode=ADJOINT):
        """The step's adjoint (``mode="hvp"``: its tangent) whose reverse sweep puts back every
        array it overwrites; ``plain``: the entry of the step's own."""
        step = self.step
        key = (signature, step.backend, mode)
        made = self._restoring.get(key)
        # made from the step's module of now: one made again from a changed constant is new
        if made is None or made[0] is not plain:
            with step._lock:
                generator = Generator(step._program)
                entry = generator.specialise(Key(step.fn, signature, frozenset(step.wrt),
                                                 frozenset(plain.key.outputs), True))
                source, namespace = generator.module(entry, step.backend, mode)
            for field in ("bar_params", "scalar_bar_params", "written_arrays", "returns"):
                if getattr(entry, field) != getattr(plain, field):
                    raise AssertionError(f"adsrc internal error: the restoring adjoint of "
                                         f"{step.fn.__name__} differs in {field}")
            self._restoring[key] = plain, _LOADED[mode](entry, step.backend, source, namespace)
        return self._restoring[key][1]

    @staticmethod
    def _variant(schedule, actions, sweeps):
        """The step's own adjoint if the schedule reverses one step at a time, else its
        restoring variant.  ``actions``: those of an offline schedule, or None for an online
        one, where only revolve does (online store_all reverses one step per tape too, but
        with no recomputation between, so the state must be put back)."""
        if (schedule == "binomial" if actions is None
                else reverses_one_step_at_a_time(actions)):
            return sweeps.module
        return sweeps.restoring()

    def _plan(self, sweeps, args, steps, state_bytes, online):
        """(schedule, snapshots, probe steps): the configured schedule, or the one that
        ``max_tape_bytes`` picks; raises AdsrcError when none fits.  Runs nothing on the user's
        arrays.  ``online``: ``steps`` is ``max_steps``, and the schedule must fit any loop of
        at most that many steps."""
        budget = self.max_tape_bytes
        if budget is None or steps == 0:
            return self.schedule or "store_all", self.snapshots, 0
        name = self.step.fn.__name__
        how_many = f"up to {steps}" if online else f"{steps}"
        if self.schedule is not None:
            actions = None if online else schedule_actions(self.schedule, steps, self.snapshots)
            variant = self._variant(self.schedule, actions, sweeps)
            need = predicted_peak_bytes(self.schedule, steps, self.snapshots, state_bytes,
                                        sweeps.probe(variant, args), online)
            if need > budget:
                raise AdsrcError(f"{name}: the {self.schedule} schedule needs {need} bytes of "
                                 f"checkpoints and step tapes for {how_many} steps, more than "
                                 f"max_tape_bytes={budget}")
            return self.schedule, self.snapshots, 1
        all_bytes = predicted_peak_bytes("store_all", steps, None, state_bytes,
                                         sweeps.probe(sweeps.restoring(), args))
        if all_bytes <= budget:
            return "store_all", None, 1
        step_bytes = sweeps.probe(sweeps.module, args)
        # the most checkpoints revolve can use: offline it tapes the last step at once, online
        # the forward sweep keeps a checkpoint of every step while there are few
        most = steps if online else steps - 1
        if state_bytes == 0 or most == 0:
            snapshots = max(most, 1) if step_bytes <= budget else 0
        else:
            snapshots = min(max(budget - step_bytes, -1) // state_bytes, most)
        if snapshots < 1:
            raise AdsrcError(
                f"{name}: no checkpoint schedule of {how_many} steps fits in "
                f"max_tape_bytes={budget}: store_all needs {all_bytes} bytes, binomial at least "
                f"{state_bytes + step_bytes} (one checkpoint of the state, {state_bytes} bytes, "
                f"plus one step tape, {step_bytes} bytes, measured on the first step)")
        return "binomial", snapshots, 2

    def _run(self, args, bars, steps, until, max_steps, after_forward=None):
        """``(results, stats)`` of ``loop.adjoint``.  ``after_forward()``, if given, runs once
        the forward sweep has ended, before the first step is reversed (a kernel with a
        checkpointed loop runs the adjoint of what follows the loop there, which seeds the
        bars of the state); the working state is then that after the last step, and must be so
        again when it returns."""
        step = self.step
        steps, until, max_steps = _check_trip(step.fn.__name__, args, steps, until, max_steps)
        signature, compiled = self._step_compiled(args)
        entry = compiled.entry
        # every check comes before anything runs: a bad call leaves the user's arrays as they were
        arrays, bar_arrays, _ = step._checked(compiled, args, dict(bars))
        sweeps = _AdjointSweeps(self, signature, compiled, bar_arrays,
                                [0.0] if entry.returns else [])
        scalar_sums, stats = self._swept(sweeps, arrays, args, steps, until, max_steps,
                                         after_forward)
        scalar_bars = dict(zip(entry.scalar_bar_params, scalar_sums))
        array_bars = dict(zip(entry.bar_params, bar_arrays))
        results = tuple(array_bars[param] if param in array_bars
                        else float(scalar_bars.get(param, 0.0)) for param in step.wrt)
        return results, stats

    def _run_second_order(self, args, dots, bars, bar_dots, steps, until, max_steps,
                          after_forward=None):
        """The tangent of :meth:`_run` (forward over reverse, for Hessian-vector products), over
        the steps ``steps``, ``until`` and ``max_steps`` say: ``dots`` holds the tangents of the
        step's arguments (floats, arrays; other keys are ignored), ``bars`` and ``bar_dots`` the
        bar arrays of the step and their tangents, all by parameter, which the steps update in
        place as :meth:`_run` does its ``bars``.  A checkpoint holds the tangents of the arrays
        the step writes beside the arrays.  Returns ``(scalar adjoints, their tangents,
        stats)``, the first two by parameter."""
        step = self.step
        steps, until, max_steps = _check_trip(step.fn.__name__, args, steps, until, max_steps)
        signature, compiled = self._step_compiled(args, HVP)
        arrays, bar_arrays, _ = step._checked(compiled, args,
                                              {param + "_bar": bar for param, bar in bars.items()})
        sweeps = _SecondOrderSweeps(self, signature, compiled, dots, bar_arrays, bar_dots)
        scalar_sums, stats = self._swept(sweeps, arrays, args, steps, until, max_steps,
                                         after_forward)
        scalar_params = compiled.entry.scalar_bar_params
        count = len(scalar_params)
        return (dict(zip(scalar_params, scalar_sums[:count])),
                dict(zip(scalar_params, scalar_sums[count:])), stats)

    def _swept(self, sweeps, arrays, args, steps, until, max_steps, after_forward):
        """Run the steps forward and back under the schedule, as ``sweeps`` (the step's
        modules and the arrays they take beside its arguments) says; returns ``(the sums of
        the scalars the reverse sweeps return, CheckpointStats)``."""
        name = self.step.fn.__name__
        state = sweeps.state(arrays)
        state_bytes = sum(array.nbytes for array in state)
        online = until is not None
        schedule, snapshots, probes = self._plan(sweeps, args, max_steps if online else steps,
                                                 state_bytes, online)
        stopped = {}
        returned = [None]          # what the last step run returned
        # a copy of the state as the caller gave it, while the loop runs forward: if the
        # caller's predicate fails (raises, or answers with an array), the state is put back, so
        # that a failed call leaves the caller's arrays as they were (the reverse sweeps, which
        # write the bars, begin only once the loop has stopped)
        given = [array.copy() for array in state] \
            if online and until is not step_returns_stop else []

        def stop(n):
            """After step ``n`` of an online schedule: whether the loop ends there."""
            try:
                ends = _ends_after(until, args, returned[0])
            except BaseException:
                for array, value in zip(state, given):
                    array[...] = value
                raise
            if ends:
                stopped.update(steps=n, by="until")
            elif n == max_steps:
                stopped.update(steps=n, by="max_steps")
            if stopped:
                given.clear()
            return bool(stopped)

        actions = (online_actions(schedule, snapshots, stop) if online
                   else schedule_actions(schedule, steps, snapshots))
        variant = self._variant(schedule, None if online else actions, sweeps)
        scalar_sums = []
        pushed = [0, 0]

        def advance(n0, n1):
            for n in range(n0, n1):
                returned[0] = sweeps.advance(self._at(args, n))

        def record(n0, n1):
            tape = variant.make_tape()
            for n in range(n0, n1):
                returned[0] = sweeps.forward(variant, self._at(args, n), tape)
                tape.note_forward_end()
            variant.remember(tape)
            pushed[0] += tape.floats_pushed
            pushed[1] += tape.ints_pushed
            return tape, tape.peak_values * BYTES_PER_VALUE

        def reverse(tape, n1, n0):
            for n in reversed(range(n0, n1)):
                scalars = sweeps.reverse(variant, self._at(args, n), tape) or ()
                scalar_sums.extend([0.0] * (len(scalars) - len(scalar_sums)))
                for k, value in enumerate(scalars):
                    scalar_sums[k] += value
            variant.release(tape)

        if after_forward is not None:
            actions = _then_at_end_forward(actions, after_forward)
        counts = run_schedule(actions, state, advance=advance, record=record, reverse=reverse,
                              restores=variant is not sweeps.module)
        if self.max_tape_bytes is not None and counts.peak_bytes > self.max_tape_bytes:
            warnings.warn(f"{name}: the adjoint held {counts.peak_bytes} bytes of checkpoints and "
                          f"step tapes, more than max_tape_bytes={self.max_tape_bytes}: later "
                          "steps recorded more than the first", stacklevel=4)
        stats = CheckpointStats(schedule, snapshots, stopped.get("steps", steps),
                                counts.forward_steps, counts.taped_steps, counts.reverse_steps,
                                counts.peak_snapshots, counts.peak_bytes, counts.peak_tape_bytes,
                                state_bytes, pushed[0], pushed[1], probes, stopped.get("by"))
        return scalar_sums, stats


class _AdjointSweeps:
    """How ``loop.adjoint`` runs a step: untaped by the compiled primal; taped and reversed by
    ``module``, the step's adjoint, or by its restoring variant; the reverse sweeps add into
    ``bars`` (the step's bar arrays, in its reverse sweep's order) from ``seed`` (the adjoint
    of the value the step returns, if it returns one: zero, as it is not an output)."""

    def __init__(self, loop, signature, module, bars, seed):
        self._loop, self._signature = loop, signature
        self.module = module
        self.bars, self.seed = bars, seed

    def restoring(self):
        return self._loop._restoring_variant(self._signature, self.module.entry)

    def state(self, arrays):
        """The arrays a checkpoint holds: those the step writes."""
        return [arrays[param] for param in self.module.entry.written_arrays]

    def advance(self, args):
        """Run one step untaped; returns what it returns."""
        return self.module.primal(*args)

    def forward(self, module, args, tape):
        """Run one step taped by ``module``; returns what it returns."""
        return module.forward(*args, tape)

    def reverse(self, module, args, tape):
        return module.reverse(*args, *self.bars, *self.seed, tape)

    def probe(self, module, args):
        """Bytes the tape of one step holds, measured on copies of the arrays the step
        writes (the tape is not the kept one: it is dropped full)."""
        written = set(module.entry.written_arrays)
        copies = [np.array(arg, copy=True) if param in written else arg
                  for param, arg in zip(module.entry.params, args)]
        tape = module.new_tape()
        self._forward_on_copies(module, copies, tape)
        tape.note_forward_end()
        module.remember(tape)
        return tape.peak_values * BYTES_PER_VALUE

    def _forward_on_copies(self, module, copies, tape):
        module.forward(*copies, tape)


class _SecondOrderSweeps(_AdjointSweeps):
    """How the tangent of ``loop.adjoint`` runs a step (forward over reverse): untaped by the
    step's tangent; taped and reversed by the tangent of its adjoint, or of the restoring
    variant.  ``dots``: {parameter: tangent} of the step's arguments; ``bar_dots``: of its
    adjoints; a checkpoint holds the tangents of the arrays the step writes too."""

    def __init__(self, loop, signature, module, dots, bars, bar_dots):
        # the value a step returns (whether a loop run until a test holds ends) is no output:
        # its adjoint and the tangent of that are zero
        super().__init__(loop, signature, module, bars, [0.0] if module.entry.returns else [])
        self._tangent = loop.step._compile(signature, mode=TANGENT)
        entry = module.entry
        self.dots = [dots[param] for param in entry.dot_params]
        self.bar_dots = [bar_dots[param] for param in entry.bar_params]
        self._written_dots = [param in entry.written_arrays for param in entry.dot_params]

    def restoring(self):
        return self._loop._restoring_variant(self._signature, self.module.entry, HVP)

    def state(self, arrays):
        return super().state(arrays) + [dot for dot, written in zip(self.dots, self._written_dots)
                                        if written]

    def advance(self, args):
        return self._value(self._tangent.tangent(*args, *self.dots))

    def forward(self, module, args, tape):
        return self._value(module.forward(*args, *self.dots, tape))

    def _value(self, returned):
        """The step's value, of what a tangent sweep returns: (value, its tangent), or None."""
        return returned[0] if self.module.entry.returns else None

    def reverse(self, module, args, tape):
        return module.reverse(*args, *self.bars, *self.seed, *self.dots, *self.bar_dots,
                              *self.seed, tape)

    def _forward_on_copies(self, module, copies, tape):
        dots = [np.array(dot, copy=True) if written else dot
                for dot, written in zip(self.dots, self._written_dots)]
        module.forward(*copies, *dots, tape)


def _then_at_end_forward(actions, hook):
    """``actions``, with ``hook()`` run after the end of the forward sweep, before the first
    reverse (:func:`run_schedule` asks for each action only after the one before has run); for a
    loop of no steps, which has no actions, after them all."""
    from checkpoint_schedules import EndForward

    ended = False
    for action in actions:
        yield action
        if isinstance(action, EndForward):
            hook()
            ended = True
    if not ended:
        hook()


def checkpointed(step, *, schedule=None, snapshots=None, max_tape_bytes=None):
    """A loop of calls of the differentiated ``step`` kernel with a checkpointed adjoint.

    ``loop(*args, steps=N)`` and ``loop.adjoint(*args, steps=N, **bars)`` run the step N times.
    ``loop(*args, until=predicate, max_steps=M)`` (and the same for ``loop.adjoint``) runs it until
    ``predicate(*args)`` is true after a step, or M times: the step runs at least once, as in
    ``while True: step(*args); if predicate(*args): break``.  The predicate must not write the
    arrays (the adjoint re-runs steps from checkpoints and calls it in the first forward sweep
    only); an exception it raises leaves them where the loop was.  The adjoint is that of the
    steps that ran, n of them (``last_stats.steps``): equal to that of ``steps=n``; the stopping
    test is not differentiated (n is locally constant, so its derivative is zero wherever n
    does not change).  Exactly one of ``steps=`` and ``until=`` is
    given: the two describe the trip count; ``max_steps=`` is required with ``until=``, since a
    tolerance never met would run forever, and since the memory budget is checked against it.

    ``schedule``: ``"binomial"`` (revolve, the default), ``"periodic"`` or ``"store_all"``;
    ``snapshots``: the most checkpoints of the state held at once (binomial and periodic).  With
    ``until=`` the number of steps is unknown while they run, so the schedule is made online:
    store_all tapes each step as it runs; binomial and periodic keep at most ``snapshots``
    checkpoints in the forward sweep, at the multiples of a period that doubles as the loop goes
    on, then reverse each segment between them with revolve (binomial: 5156 step executions for
    1000 steps and 10 snapshots, where offline revolve, knowing the count, runs 4636) or by taping
    it whole (periodic: segments up to twice as long as offline).
    ``max_tape_bytes``: a budget for checkpoints plus step tapes; without ``schedule`` it picks
    store_all if that fits, else binomial with as many snapshots as fit.  The step tape is
    measured by one taped step on copies of the state before the loop runs, and a call raises
    AdsrcError before anything runs when nothing fits; with ``until=`` the schedule must fit a
    loop of ``max_steps`` steps.

    Inside a kernel, ``for it in adsrc.checkpointed(range(n), snapshots=10):`` marks the loop
    whose adjoint is checkpointed (see :mod:`adsrc.checkpointed_kernels`); run as Python, the
    marker checks its options and gives back the range.
    """
    if isinstance(step, range):
        checked_options("adsrc.checkpointed(range(...))", schedule, snapshots, max_tape_bytes)
        return step
    return Checkpointed(step, schedule, snapshots, max_tape_bytes)
