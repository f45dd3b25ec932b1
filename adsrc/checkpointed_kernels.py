"""Kernels with a checkpointed loop inside: ``for it in adsrc.checkpointed(range(n), ...)``.

``adsrc.differentiate`` (so also ``grad``, ``value_and_grad`` and ``check_grads``) gives a
:class:`KernelWithCheckpointedLoop` for a kernel that marks one of its loops this way.  Its
adjoint means what ``Differentiable.adjoint`` means for the kernel as written, but the marked loop
is reversed under the marker's schedule (revolve with at most ``snapshots`` checkpoints of the
state by default), and ``f.adjoint.last_stats`` counts what the loop did (a
:class:`~adsrc.checkpointing.CheckpointStats`).

How: :func:`adsrc.frontend.outline.split` splits the kernel into the loop's step kernel and the
kernel after the loop, and both are differentiated as ordinary kernels.  The adjoint runs the loop
with :class:`~adsrc.checkpointing.Checkpointed` (schedules, checkpoints, counts), and at the end of
its forward sweep the whole adjoint of the kernel after the loop, which seeds the adjoints of the
state; then the loop is reversed.  A loop whose body ends with ``if <test>: break`` runs until the
step returns that its test held, at most n steps (``until=`` of :class:`Checkpointed`, with an
online schedule).  The statements before the loop only bind names, and both
kernels repeat them, so they need no sweep of their own; except the arrays they allocate, which
Python makes once per call (running those statements) and which both kernels take as parameters
after the kernel's own: the loop carries them, so the ones the step writes are state, checkpointed
with the arguments it writes.

Both kernels take every parameter of the kernel and the allocated arrays, and differentiate with
respect to the kernel's ``wrt``, its array outputs, the float arrays the loop writes and the
allocated float arrays, so that one set of bar arrays passes through both: the kernel after the
loop turns the adjoints of the final values into those of the values the loop leaves, the loop
into those of the initial values; the bars of the other arrays are incremented by each, and a
scalar's adjoint is the sum of the two.  An allocated array is a local of the kernel: its bar is
made here (zeros) and never returned, but an allocated copy gives its bar, the adjoint of its
initial value, to the array it copies (the allocation's only derivative).
"""

import contextlib
import copy
import functools
import types

import gast
import numpy as np

from adsrc.api import ADJOINT, Adjoint, Differentiable
from adsrc.checkpointing import Checkpointed, checked_options, checkpointed, step_returns_stop
from adsrc.errors import AdsrcError, ArgumentError, UnsupportedError
from adsrc.frontend import outline
from adsrc.frontend.derived import derived_kernel, kernel_source
from adsrc.frontend.intrinsics import ALLOCATIONS, canonical
from adsrc.pipeline import HVP, RETURN_OUTPUT, Program
from adsrc.runtime.arguments import signature_of


def _called(source, call):
    """The object a call names (``checkpointed``, ``adsrc.checkpointed``, a kernel), or None."""
    func, chain = call.func, []
    while isinstance(func, gast.Attribute):
        chain.append(func.attr)
        func = func.value
    if not isinstance(func, gast.Name):
        return None
    value = source.resolve(func.id)
    for attr in reversed(chain):
        if not isinstance(value, types.ModuleType):
            return None
        value = getattr(value, attr, None)
    return value


def _is_marker(source, call):
    return _called(source, call) is checkpointed


def _is_kernel_call(source, call):
    called = _called(source, call)
    return isinstance(getattr(called, "__wrapped_kernel__", called), types.FunctionType)


def _allocation(source, call):
    """The name of the NumPy allocation function a call names (``"zeros"``...), or None."""
    found = canonical(_called(source, call))
    return found[1] if found is not None and found[0] == "np" and found[1] in ALLOCATIONS \
        else None


def has_checkpointed_loop(fn):
    """Whether a kernel has a loop over ``adsrc.checkpointed(...)``; cheap for the others (a
    look at the names its code uses: ``checkpointed``, as a global or attribute, or another
    global name for it)."""
    names = getattr(getattr(fn, "__code__", None), "co_names", ())
    if "checkpointed" not in names and not any(
            fn.__globals__.get(name) is checkpointed for name in names):
        return False
    try:
        source = kernel_source(fn)
    except AdsrcError:
        return False            # Differentiable refuses it with the reason
    return bool(outline.marked_loops(source.tree, functools.partial(_is_marker, source)))


class _Adjoint(Adjoint):
    """``f.adjoint`` of a kernel with a checkpointed loop: ``last_stats`` (CheckpointStats)
    counts what the loop of the last call did."""

    def __init__(self, owner):
        super().__init__(owner)
        self.last_stats = None

    def __call__(self, *args, **bars):
        _, results, self.last_stats = self._owner._run(args, bars)
        return results


@contextlib.contextmanager
def _put_back(arrays):
    """Puts ``arrays`` back as they were before the body ran."""
    left = [array.copy() for array in arrays]
    yield
    for array, saved in zip(arrays, left):
        np.copyto(array, saved)


@contextlib.contextmanager
def _as_plain_loop():
    """Says, in a refusal of the kernel without its marker, why that kernel was made: what a
    checkpointed loop's body may do (allocate an array of a shape that changes from trip to
    trip, as the step is a kernel of its own) a plain loop's may not."""
    try:
        yield
    except UnsupportedError as error:
        raise UnsupportedError("tangent mode runs the checkpointed loop as a plain loop over its "
                               "range, where this is refused: " + error.message, error.filename,
                               error.line, error.col, error.source_line) from None


class KernelWithCheckpointedLoop(Differentiable):
    """A kernel whose marked loop is reversed under a checkpoint schedule (made by
    ``Differentiable(...)`` for such a kernel).  Tangent mode runs forward only and needs no
    checkpoints: it differentiates the kernel with the loop over the range itself.
    Hessian-vector products run the tangent of the checkpointed adjoint
    (:meth:`gradient_and_hvp`); offline generation refuses the marker (the fence says why)."""

    def __init__(self, fn, wrt, outputs=None, backend=None):
        super().__init__(fn, wrt, outputs, backend)
        source = kernel_source(self.fn)
        self._source = source
        self._split = outline.split(source, functools.partial(_is_marker, source),
                                    functools.partial(_is_kernel_call, source),
                                    functools.partial(_allocation, source))
        options = self._split.options
        try:
            self._options = checked_options(self.fn.__name__, options.get("schedule"),
                                            options.get("snapshots"),
                                            options.get("max_tape_bytes"))
        except AdsrcError as error:
            raise source.error(self._split.marker, str(error)) from None
        self._step_fn = derived_kernel(source, self._split.step)
        self._tail_fn = (None if self._split.tail is None
                         else derived_kernel(source, self._split.tail))
        self._before_fn = (None if self._split.before is None
                           else derived_kernel(source, self._split.before))
        # the parameters of the step (but its counter) and of the kernel after the loop
        self._inner_params = self.params + self._split.arrays
        program = Program()     # fences both kernels: an unsupported statement is refused here
        self._loop_writes = self._written(program, self._step_fn)
        self._tail_writes = (set() if self._tail_fn is None
                             else self._written(program, self._tail_fn))
        self._before_writes = (set() if self._before_fn is None
                               else self._written(program, self._before_fn))
        self.adjoint = _Adjoint(self)
        self._by_signature = {}
        self._unmarked = None

    @staticmethod
    def _written(program, fn):
        params = program.info(fn).source.params
        return {params[index] for index in program.written_params(fn)}

    def _written_params(self):
        return (self._before_writes | self._loop_writes | self._tail_writes) & set(self.params)

    # the parts ----------------------------------------------------------------------------------

    def _arrays(self, names, signature, floats=False):
        """The parameters of the step among ``names`` that are arrays (float arrays) for its
        ``signature``, in parameter order (the kernel's, then the allocated arrays)."""
        return [param for param, kind in zip(self._inner_params, signature)
                if param in names and kind.is_array and (kind.is_float or not floats)]

    def _outputs_for(self, signature):
        name = self.fn.__name__
        if self.outputs is not None:
            if RETURN_OUTPUT in self.outputs and not self._split.returns:
                raise AdsrcError(f"{name}: outputs names 'return', but the kernel returns "
                                 "nothing")
            return self.outputs
        if self._split.returns:
            return (RETURN_OUTPUT,)
        mutated = self._arrays((self._loop_writes | self._tail_writes) & set(self.params),
                               signature, True)
        if not mutated:
            raise AdsrcError(f"{name}: the kernel returns nothing and mutates no float array: "
                             "there is no output to differentiate")
        return tuple(mutated)

    def _inner_args(self, args):
        """The arguments of the step (but its counter) and of the kernel after the loop: the
        kernel's, then the arrays allocated before the loop, new ones, which the statements
        before the loop make when Python runs them (as the kernel does at each call)."""
        signature_of(self.fn.__name__, self.params, args)     # checked before they run
        if self._before_fn is None:
            return tuple(args)
        return tuple(args) + tuple(self._before_fn(*args))

    def _step_args(self, inner_args):
        """The step kernel's arguments: ``inner_args``, and a place for the step number."""
        return inner_args + (0,) if self._split.counter is not None else inner_args

    def _trip(self, args):
        """``(steps, until, max_steps)`` of the loop (:class:`Checkpointed`'s ways to give its
        trips): the range's n steps, or, for a loop that ends at ``if test: break``, until the
        step returns that the test held, at most n steps."""
        steps = self._steps(args)
        if self._split.until and steps > 0:
            return None, step_returns_stop, steps
        return steps, None, None

    def _steps(self, args):
        trips = self._split.trips
        if isinstance(trips, int):
            return max(trips, 0)
        value = args[self.params.index(trips)]
        if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
            raise ArgumentError(f"{self.fn.__name__}: '{trips}' is the number of steps of the "
                                f"checkpointed loop, an int; got {type(value).__name__}")
        return max(int(value), 0)       # range(n) of a negative n runs no step

    def _parts(self, args, mode=ADJOINT):
        """``(signature, loop, tail, bar names)`` for the types of ``args``
        (:meth:`_inner_args`): their signature (the call's own: ``_last_signature`` may be
        another thread's), the step kernel as a :class:`Checkpointed`, the kernel after the
        loop (None if nothing follows it), and the parameters both take bars for.  The step's
        module of ``mode`` is loaded, or its types checked before it is built, on the first
        call for those types."""
        signature = signature_of(self.fn.__name__, self._inner_params, args)
        self._last_signature = signature
        with self._lock:
            if signature not in self._by_signature:
                self._by_signature[signature] = self._made_parts(args, signature, mode)
        return (signature, *self._by_signature[signature])

    def _made_parts(self, args, signature, mode):
        """The parts :meth:`_parts` returns but the signature, made on the first call for
        ``signature``."""
        state = self._arrays(self._loop_writes, signature, True)
        if not state:
            raise self._source.error(self._split.marker, "the checkpointed loop writes no "
                                                         "float array (passed to the kernel "
                                                         "or allocated before the loop): it "
                                                         "has no state to differentiate")
        outputs = self._outputs_for(signature)
        # the adjoints of the allocated arrays pass between the two kernels and the loop's
        # steps (and to the array a copy is made of), so both take bars for them all
        bar_names = self._arrays(set(self.wrt) | set(outputs) | set(state)
                                 | set(self._split.arrays), signature, True)
        wrt = tuple(dict.fromkeys(self.wrt + tuple(bar_names)))
        step = Differentiable(self._step_fn, wrt, state, self.backend)
        # the step's module from the cache, or its analysis, before it is generated and
        # built: a refused form costs no build
        step._compile(signature_of(step.fn.__name__, step.params, self._step_args(args)),
                      mode=mode, check=lambda entry: outline.check_types(
                          self._source, self._split, entry.array_names,
                          self._arrays(self._loop_writes, signature)))
        loop = Checkpointed(step, *self._options, counter=self._split.counter)
        tail = (None if self._tail_fn is None
                else Differentiable(self._tail_fn, wrt, outputs, self.backend))
        return loop, tail, bar_names

    # running ------------------------------------------------------------------------------------

    def primal(self, *args):
        """The kernel run by the compiled step and the compiled kernel after the loop."""
        inner = self._inner_args(args)
        _, loop, tail, _ = self._parts(inner)
        steps, until, max_steps = self._trip(inner)
        loop(*self._step_args(inner), steps=steps, until=until, max_steps=max_steps)
        return None if tail is None else tail.primal(*inner)

    def _bars(self, args, given, bar_names, outputs):
        """The bar arrays of ``bar_names`` (the ones given, zeros for the others) and
        ``out_bar``, after checking the keys the way ``Differentiable.adjoint`` does (shapes
        and dtypes are checked by the two kernels' own checks)."""
        name = self.fn.__name__
        allowed = {param + "_bar" for param in bar_names
                   if param in self.wrt or param in outputs}
        if RETURN_OUTPUT in outputs:
            allowed.add("out_bar")
        for key in given:
            if key not in allowed:
                raise ArgumentError(f"{name}: unexpected adjoint '{key}'; this call takes "
                                    f"{', '.join(sorted(allowed))}")
        for param in bar_names:
            if param in outputs and param + "_bar" not in given:
                raise ArgumentError(f"{name}: pass {param}_bar=, the adjoint of the final value "
                                    f"of the output '{param}'")
        values = dict(zip(self._inner_params, args))
        bars = {param + "_bar": given[param + "_bar"] if param + "_bar" in given
                else np.zeros_like(values[param]) for param in bar_names}
        if "out_bar" in given:
            bars["out_bar"] = given["out_bar"]
        return bars

    def _run(self, args, bars):
        """``(value, results, CheckpointStats)`` of an adjoint call."""
        args = self._inner_args(args)
        signature, loop, tail, bar_names = self._parts(args)
        outputs = self._outputs_for(signature)
        bars = self._bars(args, dict(bars), bar_names, outputs)
        step_bars = {key: value for key, value in bars.items() if key != "out_bar"}
        after = {}
        if tail is not None:        # every check before anything runs
            tail._checked(tail._compile(signature), args, dict(bars))
            values = dict(zip(self._inner_params, args))
            written = [values[param] for param in self._arrays(self._tail_writes, signature)]

        # the bars that seed the adjoints of the final values of arrays the kernel writes and
        # that are not outputs start at zero, as in Differentiable._run (once every check passed)
        unseeded = [bars[param + "_bar"] for param in self._written_params() - set(outputs)
                    if param + "_bar" in bars]

        def after_loop():
            """The adjoint of the kernel after the loop, on the arrays the loop left, which it
            leaves as they were (the loop's reverse sweep starts from them)."""
            for bar in unseeded:
                bar[...] = 0.0
            if tail is None:
                return
            with _put_back(written):
                after["value"], after["results"], _ = tail._run(args, bars)
                after["final"] = [array.copy() for array in written]

        results, stats = loop._run(self._step_args(args), step_bars, *self._trip(args),
                                   after_forward=after_loop)
        for array, final in zip(written if tail is not None else [], after.get("final", [])):
            np.copyto(array, final)         # as the kernel leaves them
        for array, copied in reversed(self._split.copies):
            if copied + "_bar" in bars:     # else no derivative is asked of it
                bars[copied + "_bar"] += bars[array + "_bar"]
        from_loop = dict(zip(loop.step.wrt, results))
        from_tail = dict(zip(tail.wrt, after["results"])) if tail is not None else {}
        gradients = tuple(bars[param + "_bar"] if param + "_bar" in bars
                          else from_loop[param] + from_tail.get(param, 0.0)
                          for param in self.wrt)
        return after.get("value"), gradients, stats

    # Hessian-vector products ---------------------------------------------------------------------

    def gradient_and_hvp(self, args, wrt, v):
        """``(gradient, H v)`` of the value the kernel returns, with respect to its parameter
        ``wrt``, at ``args`` (which the run changes: the caller passes copies), for the
        direction ``v`` (checked by the caller): forward over reverse, as for any kernel
        (:mod:`adsrc.hessians`), with the loop's steps under its schedule.

        Every float argument, and every allocated array, has a tangent: ``v`` for ``wrt``,
        zero for the others, but an allocated copy's, the tangent of what it copies.  The
        loop's forward sweep carries the tangents of the state with it, and its checkpoints
        hold them; at the end of that sweep the tangent of the adjoint of the kernel after
        the loop seeds the adjoints of the state and their tangents, which the loop's reverse
        sweep takes back to the arguments."""
        args = self._inner_args(args)
        # the HVP mode's parts refuse a kernel that returns nothing
        signature, loop, tail, bar_names = self._parts(args, HVP)
        values = dict(zip(self._inner_params, args))
        dots = {param: (v if param == wrt else np.zeros_like(value)
                        if isinstance(value, np.ndarray) else 0.0)
                for param, value, kind in zip(self._inner_params, args, signature)
                if kind.is_float}
        for array, copied in self._split.copies:
            dots[array][...] = dots[copied]
        bars = {param: np.zeros_like(values[param]) for param in bar_names}
        bar_dots = {param: np.zeros_like(values[param]) for param in bar_names}
        compiled = tail._compile(signature, mode=HVP)
        entry = compiled.entry
        tail._checked(compiled, args,
                      {param + "_bar": bars[param] for param in entry.bar_params})
        tail_dots = [dots[param] for param in entry.dot_params]
        written = [values[param] for param in self._arrays(self._tail_writes, signature)]
        written += [dots[param] for param in self._arrays(self._tail_writes, signature, True)]
        after = {}

        def after_loop():
            """The tangent of the adjoint of the kernel after the loop, on the arrays (and
            tangents) the loop left, which it leaves as they were."""
            with _put_back(written):
                tape = compiled.make_tape()
                compiled.forward(*args, *tail_dots, tape)
                compiled.remember(tape)
                after["scalars"] = compiled.reverse(
                    *args, *(bars[param] for param in entry.bar_params), 1.0, *tail_dots,
                    *(bar_dots[param] for param in entry.bar_params), 0.0, tape) or ()
                compiled.release(tape)

        scalar_bars, scalar_bar_dots, _ = loop._run_second_order(
            self._step_args(args), dots, bars, bar_dots, *self._trip(args),
            after_forward=after_loop)
        for array, copied in reversed(self._split.copies):
            if copied in bars:          # else no derivative is asked of it
                bars[copied] += bars[array]
                bar_dots[copied] += bar_dots[array]
        if wrt in bars:
            return bars[wrt], bar_dots[wrt]
        count = len(entry.scalar_bar_params)
        from_tail = dict(zip(entry.scalar_bar_params, after["scalars"][:count]))
        from_tail_dots = dict(zip(entry.scalar_bar_params, after["scalars"][count:]))
        return (scalar_bars.get(wrt, 0.0) + from_tail.get(wrt, 0.0),
                scalar_bar_dots.get(wrt, 0.0) + from_tail_dots.get(wrt, 0.0))

    # tangent mode -------------------------------------------------------------------------------

    def _without_marker(self):
        """The kernel as a :class:`Differentiable` whose marked loop iterates over the range
        the marker wraps (made on first use)."""
        if self._unmarked is None:
            tree = copy.deepcopy(self._source.tree)
            position = next(k for k, stmt in enumerate(self._source.tree.body)
                            if getattr(stmt, "iter", None) is self._split.marker)
            loop = tree.body[position]
            loop.iter = loop.iter.args[0]       # adsrc.checkpointed(range(n), ...) -> range(n)
            self._unmarked = Differentiable(derived_kernel(self._source, tree), self.wrt,
                                            self.outputs, self.backend)
        return self._unmarked

    def tangent(self, *args, **dots):
        """Tangent mode, as :meth:`Differentiable.tangent`, of the kernel with its loop over
        the range itself (a forward sweep keeps nothing to reverse)."""
        with _as_plain_loop():
            return self._without_marker().tangent(*args, **dots)

    def source(self, kind=ADJOINT, args=None, backend=None):
        """The generated adjoints of the loop's step and of the kernel after the loop; the
        tangent (``kind="tangent"`` or ``"vector_tangent"``) of the kernel with its loop over
        the range itself."""
        if kind != ADJOINT:
            with _as_plain_loop():
                return self._without_marker().source(kind, args, backend)
        if args is None and self._last_signature is None:
            raise AdsrcError(f"{self.fn.__name__}.source(): the generated code depends on the "
                             "argument types; call .adjoint(...) first or pass args=(...)")
        inner = None if args is None else self._inner_args(args)
        signature = self._last_signature if inner is None else self._parts(inner)[0]
        loop, tail, _ = self._by_signature[signature]
        step_args = None if inner is None else self._step_args(inner)
        parts = [loop.step.source(ADJOINT, step_args, backend)]
        if tail is not None:
            parts.append(tail.source(ADJOINT, inner, backend))
        return "\n\n".join(parts)
