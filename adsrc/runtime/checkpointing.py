"""Checkpoint schedules for the adjoint of an iteration loop, and the driver that runs them.

A schedule is a sequence of the actions of the ``checkpoint_schedules`` package, read as:

* ``Forward(n0, n1, write_ics, write_adj_deps, storage)``: run steps ``n0 .. n1-1`` on the working
  state; first save a checkpoint of the state at ``n0`` if ``write_ics``; record the steps on a
  tape if ``write_adj_deps``, else run them untaped;
* ``Reverse(n1, n0, clear_adj_deps)``: run the reverse sweeps of steps ``n1-1 .. n0`` from the
  tape the matching ``Forward`` recorded, then drop that tape;
* ``Copy(n, RAM, WORK)`` / ``Move(n, RAM, WORK)``: put the checkpoint of step ``n`` into the
  working state (``Move`` also drops the checkpoint); ``Move(n, RAM, NONE)`` drops it only;
* ``EndForward()`` / ``EndReverse()``: the end of the forward and of the reverse sweep.

Three schedules: ``"binomial"`` (Griewank and Walther's revolve, from
``checkpoint_schedules.MultistageCheckpointSchedule``: the fewest step executions for a number of
checkpoints), ``"periodic"`` (a checkpoint every ``ceil(steps / snapshots)`` steps, each segment
re-run with its tape, then reversed) and ``"store_all"`` (every step taped, nothing re-run).

When the number of steps is known only once the loop ends (a loop to a tolerance),
:func:`online_actions` makes the actions as the loop runs: ``checkpoint_schedules`` has no online
schedule that holds a bounded number of checkpoints in memory (``TwoLevelCheckpointSchedule`` keeps
one every ``period`` steps, however many steps run), so the forward sweep keeps checkpoints at the
multiples of a period that doubles whenever they would exceed the budget, and once the loop has
stopped each segment between them is reversed, last first, with the offline schedule for the
segment's length and the checkpoints left free.

:func:`run_schedule` runs the actions with callables for the steps (so it knows nothing about
kernels), copies the state arrays for checkpoints, counts step executions and tracks the peak of
checkpoint plus tape bytes held at once (:class:`ScheduleCounts`).
"""

import math
from dataclasses import dataclass

import numpy as np

# checkpoint_schedules is imported where it is used: it imports Numba when Numba is installed,
# which would add a fifth of a second to ``import adsrc``.

SCHEDULES = ("binomial", "periodic", "store_all")


def binomial_actions(steps, snapshots):
    """Revolve with at most ``snapshots`` checkpoints (the one of step 0 included)."""
    from checkpoint_schedules import EndReverse, MultistageCheckpointSchedule

    _revolve_in_python()
    if steps == 0:
        return []
    actions = []
    for action in MultistageCheckpointSchedule(steps, snapshots, 0):
        actions.append(action)
        if isinstance(action, EndReverse):
            return actions
    raise AssertionError("adsrc internal error: the binomial schedule did not end")


def _revolve_in_python():
    """Have ``MultistageCheckpointSchedule`` call its revolve helper ``n_advance`` as the
    Python function it is.  Where Numba is installed, ``checkpoint_schedules`` compiles that
    helper with Numba at its first call in a process, without an on-disk cache: seconds (3.6 s
    in benchmarks/CHECKPOINTING.md) and about 70 MB more memory, in every process that makes a
    binomial schedule, for a loop of a few integer operations per schedule action, which Python
    runs in microseconds (and with exact integers, where Numba's are 64-bit).  Numba's function
    keeps the Python one as ``py_func``; without Numba the helper is already Python."""
    from checkpoint_schedules import multistage

    multistage.n_advance = getattr(multistage.n_advance, "py_func", multistage.n_advance)


def periodic_actions(steps, snapshots):
    """A checkpoint at the start of every ``k = ceil(steps / snapshots)`` steps but the last
    segment's, which is taped at once; every other segment is re-run from its checkpoint with a
    tape and reversed, last segment first."""
    from checkpoint_schedules import EndForward, EndReverse, Forward, Move, Reverse, StorageType

    if steps == 0:
        return []
    period = math.ceil(steps / snapshots)
    starts = list(range(0, steps, period))
    ends = starts[1:] + [steps]
    actions = [Forward(start, end, True, False, StorageType.RAM)
               for start, end in zip(starts[:-1], ends[:-1])]
    actions += [Forward(starts[-1], steps, False, True, StorageType.WORK), EndForward(),
                Reverse(steps, starts[-1], True)]
    for start, end in zip(reversed(starts[:-1]), reversed(ends[:-1])):
        actions += [Move(start, StorageType.RAM, StorageType.WORK),
                    Forward(start, end, False, True, StorageType.WORK),
                    Reverse(end, start, True)]
    return actions + [EndReverse()]


def store_all_actions(steps):
    """Every step taped in one forward sweep, then all reversed."""
    from checkpoint_schedules import EndForward, EndReverse, Forward, Reverse, StorageType

    if steps == 0:
        return []
    return [Forward(0, steps, False, True, StorageType.WORK), EndForward(),
            Reverse(steps, 0, True), EndReverse()]


def schedule_actions(schedule, steps, snapshots=None):
    """The actions of ``schedule`` (one of :data:`SCHEDULES`) for ``steps`` steps."""
    if schedule == "binomial":
        return binomial_actions(steps, snapshots)
    if schedule == "periodic":
        return periodic_actions(steps, snapshots)
    if schedule == "store_all":
        return store_all_actions(steps)
    raise ValueError(f"unknown schedule {schedule!r}")


def _shifted(action, offset):
    """``action`` for steps ``offset`` later: a segment's schedule placed in the whole loop."""
    from checkpoint_schedules import Copy, Forward, Move, Reverse

    if isinstance(action, Forward):
        return Forward(action.n0 + offset, action.n1 + offset, action.write_ics,
                       action.write_adj_deps, action.storage)
    if isinstance(action, Reverse):
        return Reverse(action.n1 + offset, action.n0 + offset, action.clear_adj_deps)
    if isinstance(action, (Copy, Move)):
        return type(action)(action.n + offset, action.from_storage, action.to_storage)
    raise AssertionError(f"adsrc internal error: cannot shift {action!r}")


def online_period(steps, snapshots):
    """The period :func:`online_actions` ends with for a loop of ``steps`` steps: the smallest
    power of two ``p`` with ``ceil(steps / p) <= snapshots``."""
    period = 1
    while math.ceil(steps / period) > snapshots:
        period *= 2
    return period


def online_actions(schedule, snapshots, stop):
    """The actions of ``schedule`` for a loop that runs until ``stop(n)``, called after step
    ``n`` (counted from 1) has run, returns true.  A generator: it must be run by
    :func:`run_schedule`, which runs each action before asking for the next, so ``stop`` sees the
    working state after step ``n``.

    ``"store_all"`` tapes every step as it runs (one tape per step, since the last step is known
    only after it ran) and reverses them all.  ``"binomial"`` and ``"periodic"`` run the forward
    sweep untaped, keeping a checkpoint at every multiple of a period that starts at 1 and doubles,
    dropping the odd multiples, whenever one more checkpoint would exceed ``snapshots``: at most
    ``snapshots`` are held, ending ``online_period(n, snapshots)`` steps apart.  Then the segments
    between them are reversed, last first: each one's checkpoint goes back into the working state
    and the segment runs its own offline schedule (revolve with the checkpoints the earlier
    segments leave free, its own included, or the segment taped whole for periodic), which saves
    that checkpoint again where it needs it.  The last step must be re-run with a tape, since it
    is known to be the last only after it ran untaped.
    """
    from checkpoint_schedules import (EndForward, EndReverse, Forward, Move, Reverse,
                                      StorageType)

    n = 0
    if schedule == "store_all":
        while True:
            yield Forward(n, n + 1, False, True, StorageType.WORK)
            n += 1
            if stop(n):
                break
        yield EndForward()
        for step in reversed(range(n)):
            yield Reverse(step + 1, step, True)
        yield EndReverse()
        return
    if schedule not in ("binomial", "periodic"):
        raise ValueError(f"unknown schedule {schedule!r}")
    period, held = 1, []
    while True:
        if n % period == 0 and len(held) == snapshots:
            period *= 2
            for step in held:
                if step % period:
                    yield Move(step, StorageType.RAM, StorageType.NONE)
            held = [step for step in held if step % period == 0]
        write = n % period == 0
        yield Forward(n, n + 1, write, False, StorageType.RAM)
        if write:
            held.append(n)
        n += 1
        if stop(n):
            break
    yield EndForward()
    ends = held[1:] + [n]
    for index in reversed(range(len(held))):
        start, length = held[index], ends[index] - held[index]
        yield Move(start, StorageType.RAM, StorageType.WORK)
        segment = (binomial_actions(length, snapshots - index) if schedule == "binomial"
                   else store_all_actions(length))
        for action in segment:
            if not isinstance(action, (EndForward, EndReverse)):
                yield _shifted(action, start)
    yield EndReverse()


def reverses_one_step_at_a_time(actions):
    """Whether every ``Reverse`` of ``actions`` covers a single step (revolve's do): then a step
    reverse sweep that leaves the state in an intermediate state is enough, since the state is
    always put back from a checkpoint or recomputed before it is read again."""
    from checkpoint_schedules import Reverse

    return all(len(action) == 1 for action in actions if isinstance(action, Reverse))


@dataclass
class ScheduleCounts:
    """What running a schedule cost.

    ``forward_steps``: step executions, taped and untaped; ``taped_steps`` of them recorded on a
    tape; ``reverse_steps``: step reverse sweeps; ``peak_snapshots``: most checkpoints held at
    once; ``peak_bytes``: most bytes held at once by checkpoints and step tapes together;
    ``peak_tape_bytes``: most bytes held at once by step tapes alone.
    """

    forward_steps: int = 0
    taped_steps: int = 0
    reverse_steps: int = 0
    peak_snapshots: int = 0
    peak_bytes: int = 0
    peak_tape_bytes: int = 0


def _state_bytes(arrays):
    return sum(array.nbytes for array in arrays)


def run_schedule(actions, state, *, advance, record, reverse, restores):
    """Run a schedule on the working ``state`` (a list of arrays the steps update in place).

    ``actions``: a list, or an :func:`online_actions` generator, which is asked for each action
    only after the one before has run.

    ``advance(n0, n1)`` runs steps ``n0 .. n1-1`` untaped; ``record(n0, n1)`` runs them on a tape
    and returns ``(tape, bytes the tape holds)``; ``reverse(tape, n1, n0)`` runs their reverse
    sweeps, last step first.  ``restores`` says whether a reverse sweep puts the state back to
    what it was before the steps; if not, the state must come from a checkpoint before it is
    used again (the driver checks it).  The final state is saved at ``EndForward`` and put back
    at ``EndReverse``, so ``state`` ends as the forward sweep left it.  Returns
    :class:`ScheduleCounts`.
    """
    from checkpoint_schedules import (Copy, EndForward, EndReverse, Forward, Move, Reverse,
                                      StorageType)

    counts = ScheduleCounts()
    checkpoints = {}            # step -> copies of the state arrays
    tapes = []                  # (n0, n1, tape, bytes), innermost last
    final = None
    at = 0                      # the step the working state is at; None: intermediate
    held_checkpoints = held_tapes = 0   # bytes; summed as they change, not over all the tapes
    unit = _state_bytes(state)

    def fail(action, why):
        raise AssertionError(f"adsrc internal error: checkpoint schedule action {action!r}: {why}")

    for action in actions:
        if isinstance(action, Forward):
            if at != action.n0:
                fail(action, f"the working state is at step {at}")
            if action.write_ics:
                if action.storage != StorageType.RAM:
                    fail(action, "only checkpoints in memory are supported")
                if action.n0 in checkpoints:
                    fail(action, "a checkpoint of this step is held already")
                checkpoints[action.n0] = [array.copy() for array in state]
                held_checkpoints += unit
            if action.write_adj_deps:
                tape, nbytes = record(action.n0, action.n1)
                tapes.append((action.n0, action.n1, tape, nbytes))
                held_tapes += nbytes
                counts.taped_steps += len(action)
            else:
                advance(action.n0, action.n1)
            counts.forward_steps += len(action)
            at = action.n1
        elif isinstance(action, Reverse):
            if not tapes or tapes[-1][:2] != (action.n0, action.n1):
                fail(action, "no tape recorded for exactly these steps")
            if at != action.n1:
                fail(action, f"the working state is at step {at}")
            if not restores and len(action) != 1:
                fail(action, "a reverse over several steps needs a restoring reverse sweep")
            _, _, tape, nbytes = tapes.pop()
            held_tapes -= nbytes
            reverse(tape, action.n1, action.n0)
            counts.reverse_steps += len(action)
            at = action.n0 if restores else None
        elif isinstance(action, Move) and action.to_storage == StorageType.NONE:
            if action.n not in checkpoints:
                fail(action, "not a held checkpoint")
            del checkpoints[action.n]
            held_checkpoints -= unit
        elif isinstance(action, (Copy, Move)):
            if action.to_storage != StorageType.WORK or action.n not in checkpoints:
                fail(action, "not a held checkpoint copied to the working state")
            for array, saved in zip(state, checkpoints[action.n]):
                np.copyto(array, saved)
            if isinstance(action, Move):
                del checkpoints[action.n]
                held_checkpoints -= unit
            at = action.n
        elif isinstance(action, EndForward):
            final = [array.copy() for array in state]
        elif isinstance(action, EndReverse):
            for array, saved in zip(state, final):
                np.copyto(array, saved)
            at = None
        else:
            fail(action, "unknown action")
        counts.peak_snapshots = max(counts.peak_snapshots, len(checkpoints))
        counts.peak_bytes = max(counts.peak_bytes, held_checkpoints + held_tapes)
        counts.peak_tape_bytes = max(counts.peak_tape_bytes, held_tapes)
    if checkpoints or tapes:
        raise AssertionError("adsrc internal error: checkpoints or tapes left after the schedule")
    return counts


def predicted_peak_bytes(schedule, steps, snapshots, state_bytes, step_tape_bytes,
                         online=False):
    """Checkpoint plus tape bytes ``schedule`` holds at its peak, when every step's tape holds
    ``step_tape_bytes``: what ``max_tape_bytes=`` is checked against.

    ``online``: the bound for :func:`online_actions` and any loop of at most ``steps`` steps.  Its
    forward sweep may hold a checkpoint of the last step (a checkpoint more than revolve, which
    tapes the last step at once), and a periodic segment may be up to twice ``steps / snapshots``
    steps long; the bound adds the most checkpoints to the longest segment's tapes, though the
    forward sweep holds no tape."""
    if steps == 0:
        return 0
    if schedule == "store_all":
        return steps * step_tape_bytes
    if online and schedule in ("binomial", "periodic"):
        tapes = 1 if schedule == "binomial" else online_period(steps, snapshots)
        return min(snapshots, steps) * state_bytes + tapes * step_tape_bytes
    if schedule == "binomial":
        return min(snapshots, steps - 1) * state_bytes + step_tape_bytes
    if schedule == "periodic":
        period = math.ceil(steps / snapshots)
        return (math.ceil(steps / period) - 1) * state_bytes + period * step_tape_bytes
    raise ValueError(f"unknown schedule {schedule!r}")
