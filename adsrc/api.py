"""The public entry points: ``differentiate``, ``grad`` and ``value_and_grad``.

Semantics (also in the README):

* ``wrt`` names the differentiable arguments (names or positions); every other argument is
  constant.  ``outputs`` names the dependents: arrays the kernel mutates and/or ``"return"``
  (default: the return value if the kernel returns one, else every float array it mutates).
* ``f.adjoint(*args, **bars)`` runs the primal forward, mutating the arguments exactly as ``f``
  would, then the reverse sweep.  On entry each output's ``<name>_bar`` holds the adjoint of its
  final value (``out_bar=`` for the return value, default 1.0); on return the ``_bar`` of a
  mutated array holds the adjoint of its initial value, and the ``_bar`` of every other ``wrt``
  array has been incremented by its adjoint.  It returns one entry per ``wrt`` name: the
  ``_bar`` array (the one passed in, or a new one started at zero) or a float for a scalar.
"""

import functools
import inspect
import os
import shutil
import sysconfig
import threading
import warnings

import numpy as np

from adsrc.backends import located_errors
from adsrc.compiling import cython_build
from adsrc.compiling.source_key import SourceKey, unchanged, watched_globals
from adsrc.directions import check_stacks, stack_size, vector_tangent
from adsrc.errors import AdsrcError, ArgumentError
from adsrc.frontend.derived import kernel_source
from adsrc.frontend.fence import check_entry_parameters
from adsrc.matrix_arguments import MatrixKernel, layouts
from adsrc.pipeline import ADJOINT, HVP, RETURN_OUTPUT, TANGENT, Program, specialise_entry
from adsrc.runtime.arguments import (check_by_position, check_contiguous, check_distinct,
                                     check_no_keywords, check_out_bar, check_writeable,
                                     signature_of, usual_signature)
from adsrc.runtime.call_checks import CallChecks
from adsrc.runtime.tape import Tape, TapeStats
from adsrc.transformations.second_order import dot_name
from adsrc.transformations.vector import VectorModeUnsupported
from adsrc.vector_pipeline import VECTOR_HVP, VECTOR_TANGENT


def _parameter_names(fn):
    return list(inspect.signature(fn).parameters)


def _names(fn, spec, what):
    """Normalise ``wrt``/``outputs`` given as names or positions to a tuple of names."""
    params = _parameter_names(fn)
    try:
        items = (spec,) if isinstance(spec, (str, int)) else tuple(spec)
    except TypeError:
        items = (spec,)         # refused below, as any other item that is no name or position
    names = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            if not -len(params) <= item < len(params):
                raise AdsrcError(f"{fn.__name__}: {what} position {item} is out of range")
            item = params[item]
        if not isinstance(item, str):
            raise AdsrcError(f"{fn.__name__}: {what} takes argument names or positions, got "
                             f"{item!r}")
        if item not in params and not (what == "outputs" and item == RETURN_OUTPUT):
            raise AdsrcError(f"{fn.__name__}: {what} names '{item}', which is not an argument "
                             f"(arguments: {', '.join(params)})")
        if item in names:
            raise AdsrcError(f"{fn.__name__}: {what} names '{item}' twice")
        names.append(item)
    if not names:
        # empty outputs would give a derivative of nothing: zero, which no check can fault
        raise AdsrcError(f"{fn.__name__}: {what} is empty")
    return tuple(names)


BACKENDS = ("cython", "python")


BACKEND_VARIABLE = "ADSRC_BACKEND"


def default_backend():
    """$ADSRC_BACKEND if set; else "cython" when a C compiler is available, else "python"."""
    return os.environ.get(BACKEND_VARIABLE) or _detected_backend()


@functools.lru_cache(maxsize=None)
def _detected_backend():
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) or shutil.which("cc"):
        return "cython"
    warnings.warn("adsrc: no C compiler found; using the (slow) Python backend", stacklevel=4)
    return "python"


def _backend(name):
    name = default_backend() if name is None else name
    if name not in BACKENDS:
        raise AdsrcError(f"unknown backend {name!r} (available: {', '.join(BACKENDS)})")
    return name


class _Loaded:
    """A loaded module of one signature and backend, with the checks of its calls (made once
    per kind of companion, see :meth:`Differentiable._checked_with`)."""

    def __init__(self, entry, backend, source):
        self.entry = entry
        self.backend = backend
        self.source = source
        self.checks = {}

    def _function(self, namespace, name):
        """The module's function ``name``, whose errors name the user's line."""
        return located_errors.with_user_lines(namespace[name], self.source, self.entry.key.fn)


class _Swept(_Loaded):
    """A loaded module whose calls sweep forward, recording on a tape, then back."""

    def __init__(self, entry, backend, source, namespace):
        super().__init__(entry, backend, source)
        self._tape_class = cython_build.tape_class() if backend == "cython" else Tape
        self._tape_sizes = ()
        self._spare_tapes = []

    def make_tape(self):
        """A tape for one call: an earlier call's, handed back when its reverse sweep ended
        (:meth:`release`), else a new one as large as the last call's was when its forward
        sweep ended (:meth:`remember`).  A new tape's stacks are new memory, which the forward
        sweep page-faults in as it pushes (a tape above glibc's 32 MiB mmap threshold is
        mapped afresh on every call); and a stack that has to grow copies all it holds."""
        try:
            tape = self._spare_tapes.pop()
        except IndexError:
            return self.new_tape()
        tape.restart()
        return tape

    def new_tape(self):
        """A new tape, as large as the last call's was when its forward sweep ended (for a
        tape that is not swept back, which :meth:`release` could not keep)."""
        return self._tape_class(*self._tape_sizes)

    def remember(self, tape):
        """Keep the sizes of ``tape``, whose forward sweep has ended, for the next new tape."""
        if self.backend == "cython":
            self._tape_sizes = tape.sizes

    def release(self, tape):
        """Keep ``tape``, whose reverse sweep has emptied it, for the next call.  One tape at
        most is kept: the memory of one call's tape stays held between calls, and is freed
        with the kernel object."""
        if self.backend == "cython" and not self._spare_tapes and tape.empty():
            self._spare_tapes.append(tape)


class _Compiled(_Swept):
    """The loaded adjoint of one signature and backend."""

    def __init__(self, entry, backend, source, namespace):
        super().__init__(entry, backend, source, namespace)
        self.forward = self._function(namespace, entry.fwd_name)
        self.reverse = self._function(namespace, entry.rev_name)
        self.primal = self._function(namespace, entry.primal_name) if backend == "cython" \
            else entry.key.fn


class _CompiledTangent(_Loaded):
    """The loaded tangent of one signature and backend."""

    def __init__(self, entry, backend, source, namespace):
        super().__init__(entry, backend, source)
        self.tangent = self._function(namespace, entry.tan_name)


class _CompiledSecondOrder(_Swept):
    """The loaded tangent of the adjoint (``__fwd_dot``, ``__rev_dot``) of one signature."""

    def __init__(self, entry, backend, source, namespace):
        super().__init__(entry, backend, source, namespace)
        self.forward = self._function(namespace, dot_name(entry.fwd_name))
        self.reverse = self._function(namespace, dot_name(entry.rev_name))


_LOADED = {ADJOINT: _Compiled, TANGENT: _CompiledTangent, HVP: _CompiledSecondOrder,
           VECTOR_TANGENT: _CompiledTangent, VECTOR_HVP: _CompiledSecondOrder}


class Adjoint:
    """``f.adjoint``: callable, with ``last_tape_stats`` describing the last call."""

    def __init__(self, owner):
        self._owner = owner
        self.last_tape_stats = None

    def __call__(self, *args, **bars):
        check_by_position(self._owner.fn.__name__, self._owner.params, bars)
        _, results, stats = self._owner._run(args, bars)
        self.last_tape_stats = stats
        return results


class Differentiable:
    """A kernel with its derivative: call it for the primal, ``.adjoint`` for reverse mode."""

    def __new__(cls, fn=None, *args, **kwargs):
        """A kernel with a checkpointed loop inside (``for it in adsrc.checkpointed(...)``) is
        a :class:`~adsrc.checkpointed_kernels.KernelWithCheckpointedLoop`, whichever entry point
        makes it (differentiate, grad, check_grads...)."""
        # imported here: that module builds on this one
        from adsrc.checkpointed_kernels import KernelWithCheckpointedLoop, has_checkpointed_loop

        if cls is Differentiable and has_checkpointed_loop(
                fn.fn if isinstance(fn, Differentiable) else fn):
            cls = KernelWithCheckpointedLoop
        return super().__new__(cls)

    def __init__(self, fn, wrt, outputs=None, backend=None):
        if isinstance(fn, Differentiable):      # grad(f), hvp(f)...: f's backend by default
            backend = fn.backend if backend is None else backend
            fn = fn.fn
        # a function adsrc cannot read is refused first, and clearly; so are parameters a
        # kernel cannot take, before any call is counted against them
        check_entry_parameters(kernel_source(fn))
        self.fn = fn
        functools.update_wrapper(self, fn)
        self.__wrapped_kernel__ = fn
        self.wrt = _names(fn, wrt, "wrt")
        self.outputs = None if outputs is None else _names(fn, outputs, "outputs")
        self.params = _parameter_names(fn)
        self.backend = _backend(backend)
        self.adjoint = Adjoint(self)
        self._program = Program()
        self._compiled = {}
        self._watched = None            # what they were made from (source_key.watched_globals)
        self._lock = threading.RLock()
        self._last_signature = None
        self._matrix_kernels = {}       # layouts of sparse matrix arguments -> MatrixKernel
        self._last_matrices = None      # the MatrixKernel of the last call, if it had matrices

    def __call__(self, *args, **keywords):
        """The original function, as it is: keywords too (the derivatives take arguments by
        position only)."""
        return self.fn(*args, **keywords)

    def primal(self, *args, **keywords):
        """The kernel compiled by this object's backend (the original function for "python").

        Returns what the kernel returns (None for a kernel without a return value)."""
        check_no_keywords(self.fn.__name__, self.params, keywords)
        signature, matrices = self._signature_or_matrices(args)
        if matrices is not None:
            return matrices.inner.primal(*matrices.arguments(args))
        return self._checked_primal(args, signature).primal(*args)

    def _signature_or_matrices(self, args):
        """``(the signature of a call, None)``, or ``(None, the MatrixKernel of its sparse
        matrices)``.  The usual arguments (arrays and numbers) are typed from a table and not
        shown to SciPy; only other arguments are looked at for matrices, then typed or
        refused."""
        if len(args) == len(self.params):
            signature = usual_signature(self.fn.__name__, self.params, args)
            if signature is not None:
                self._last_matrices = None
                return signature, None
        matrices = self._matrices(args)
        if matrices is not None:
            return None, matrices
        return signature_of(self.fn.__name__, self.params, args), None

    def _matrices(self, args):
        """The :class:`~adsrc.matrix_arguments.MatrixKernel` of the sparse matrices among
        ``args`` (made once per layout), or None when there are none."""
        found = layouts(self.params, args)
        matrices = None
        if found:
            with self._lock:
                matrices = self._matrix_kernels.get(found)
                if matrices is None:
                    matrices = self._matrix_kernels[found] = MatrixKernel(self, found)
        self._last_matrices = matrices
        return matrices

    def check_distinct_before_copies(self, args):
        """The check of a call that runs the kernel on copies of ``args`` (jacobian, hvp,
        check_grads): copies would part two arrays that share memory where the kernel writes
        one, and give the derivatives of another function than the call's."""
        check_distinct(self.fn.__name__, {param: value for param, value in zip(self.params, args)
                                          if isinstance(value, np.ndarray)},
                       self._written_params())

    def _written_params(self):
        """The parameters the kernel writes, directly or through the kernels it calls."""
        with self._lock:        # threads share self._program (see _compile)
            written = self._program.written_params(self.fn)
        return {self.params[position] for position in written}

    def _outputs_of_call(self, args):
        """The outputs of a call with ``args``, in order."""
        matrices = self._matrices(args)
        if matrices is not None:
            return matrices.inner._outputs_of_call(matrices.arguments(args))
        return self._outputs_for(signature_of(self.fn.__name__, self.params, args))

    def _checked_primal(self, args, signature=None):
        """The compiled adjoint module for ``args`` (of ``signature``, when the caller has it),
        after the checks a primal call needs (shared with the loops of
        :mod:`adsrc.checkpointing`)."""
        name = self.fn.__name__
        compiled = self._compile(signature or signature_of(name, self.params, args))
        if compiled.backend == "cython":
            # the generated loops assume what they write is distinct from what they read, where
            # NumPy reads a whole right-hand side first ('y[:] = x[::-1]' with y the same as x)
            check_contiguous(name, self.params, args)
            check_distinct(name, {param: value for param, value in zip(self.params, args)
                                  if isinstance(value, np.ndarray)},
                           compiled.entry.written_arrays)
        check_writeable(name, self.params, args, compiled.entry.written_arrays)
        return compiled

    # generation ---------------------------------------------------------------------------------

    def _outputs_for(self, signature):
        """The outputs of a call of types ``signature``: ``outputs``, else the return value,
        else the float arrays the kernel writes."""
        with self._lock:
            # threads share self._program, whose inference of a return type takes a call of
            # the key it is inferring for a recursive one: a second thread asking meanwhile
            # (a tangent call while another thread's first adjoint call generates code) was
            # told 'a float', and the first thread could swap in a fresh Program midway
            return self._outputs_with(self._program, signature)

    def _outputs_with(self, program, signature):
        info = program.info(self.fn)
        return_type = program.return_type(self.fn, signature)
        returns = return_type is not None
        if returns and not return_type.is_float and (
                self.outputs is None or RETURN_OUTPUT in self.outputs):
            hint = "" if self.outputs is not None else (
                " (without outputs=, the return value is the output: name the arrays to "
                "differentiate, as outputs=('x',))")
            raise AdsrcError(f"{self.fn.__name__}: the return value is {return_type}, not a "
                             f"float: there is no derivative to take of it{hint}")
        if self.outputs is not None:
            if RETURN_OUTPUT in self.outputs and not returns:
                raise AdsrcError(f"{self.fn.__name__}: outputs names 'return', but the kernel "
                                 "returns nothing")
            for name in self.outputs:
                kind = None if name == RETURN_OUTPUT else signature[self.params.index(name)]
                if kind is not None and not (kind.is_array and kind.is_float):
                    raise ArgumentError(f"{self.fn.__name__}: outputs names '{name}', which is "
                                        f"{kind}: an output is a float array the kernel may "
                                        "write, or 'return'")
            return self.outputs
        if returns:
            return (RETURN_OUTPUT,)
        written = program.written_params(self.fn)
        mutated = tuple(info.source.params[i] for i in sorted(written)
                        if signature[i].is_array and signature[i].is_float)
        if not mutated:
            raise AdsrcError(f"{self.fn.__name__}: the kernel returns nothing and mutates no "
                             "float array: there is no output to differentiate")
        return mutated

    def specialise(self, signature):
        """The generator and entry specialisation for argument types ``signature``."""
        for name in self.wrt:
            kind = signature[self.params.index(name)]
            if not kind.is_float:
                hint = " (pass a float such as 1.0)" if kind.kind == "int" else ""
                raise ArgumentError(f"{self.fn.__name__}: cannot differentiate with respect "
                                    f"to '{name}', which is {kind}, not a float{hint}")
        return specialise_entry(self._program, self.fn, signature, self.wrt,
                                self._outputs_for(signature))

    def _compile(self, signature, backend=None, mode=ADJOINT, check=None):
        """The compiled module for ``signature``.  ``check(entry)``, called on the entry
        specialisation of a module this object has not loaded yet, may refuse it: before the
        module is generated and built when the cache does not hold it."""
        backend = self.backend if backend is None else _backend(backend)
        key = (signature, backend, mode)
        if self._watched and not unchanged(self._watched):
            with self._lock:        # a constant or a callee the modules were made from changed
                self._compiled.clear()
                self._program = Program()
                self._watched = None
        compiled = self._compiled.get(key)
        if compiled is None:
            with self._lock:        # one analysis at a time: threads share self._program
                compiled = self._compiled.get(key)
                if compiled is None:
                    if self._watched is None:
                        self._watched = watched_globals(self.fn)
                    compiled = self._load_or_generate(signature, backend, mode, check)
                    self._compiled[key] = compiled
        self._last_signature = signature
        return compiled

    def _load_or_generate(self, signature, backend, mode, check=None):
        """The module found in the cache by its source key, without running the pipeline (a
        cache hit then costs a few milliseconds, not tens); else the pipeline's, recorded
        under that key.  The pipeline runs on a fresh Program, so that the module is generated
        from the sources and constants the key describes, not from ones fenced earlier."""
        source_key = SourceKey(self.fn, self.wrt, self.outputs, signature, backend, mode)

        def specialised():
            with self._lock:
                return self.specialise(signature)[1]

        found = source_key.load(specialised)
        if found is not None:
            entry, source, namespace = found
            if check is not None:
                check(entry)
            return _LOADED[mode](entry, backend, source, namespace)
        self._program = Program()
        generator, entry = self.specialise(signature)
        if check is not None:
            check(entry)
        source, namespace = generator.module(entry, backend, mode)
        source_key.record(entry, source, namespace)
        return _LOADED[mode](entry, backend, source, namespace)

    def source(self, kind=ADJOINT, args=None, backend=None):
        """The generated source of the adjoint (``kind="adjoint"``) or of the tangent
        (``"tangent"``) for the signature of ``args`` (default: the last call's), in the
        language of ``backend`` (default: this object's)."""
        if kind not in (ADJOINT, TANGENT, VECTOR_TANGENT):
            raise AdsrcError(f"source(): unknown kind {kind!r} (available: 'adjoint', "
                             "'tangent', 'vector_tangent')")
        matrices = self._matrices(args) if args is not None else self._last_matrices
        if matrices is not None:
            inner_args = None if args is None else matrices.arguments(args)
            return matrices.inner.source(kind, inner_args, backend)
        if args is not None:
            signature = signature_of(self.fn.__name__, self.params, args)
        elif self._last_signature is not None:
            signature = self._last_signature
        else:
            raise AdsrcError(f"{self.fn.__name__}.source(): the generated code depends on the "
                             "argument types; call .adjoint(...) first or pass args=(...)")
        return self._compile(signature, backend, kind).source

    def tangent(self, *args, **dots):
        """Tangent (forward) mode: the directional derivatives of the outputs.

        Runs the kernel, mutating the arguments exactly as ``f`` would.  ``<name>_dot=`` gives
        the direction of a ``wrt`` argument (an array of its shape, or a float; zero when not
        given).  Returns one entry per output, in the order of ``outputs``: the tangent of a
        mutated array's final value (in the ``_dot`` array passed for it, which is overwritten,
        or in a new array), or of the return value as a float.  The other directions are left
        as they were passed.

        Vector mode: with stacks of k directions (``x_dot`` of shape ``(k,) + x.shape``, a
        length-k array for a float) it runs one sweep whose tangent work is k wide, and returns
        stacks of k tangents (``(k,)`` for the return value)."""
        check_by_position(self.fn.__name__, self.params, dots)
        signature, matrices = self._signature_or_matrices(args)
        if matrices is not None:
            inner_dots = matrices.companions(args, dots, "_dot")
            with matrices.in_user_terms():
                return matrices.inner.tangent(*matrices.arguments(args), **inner_dots)
        k = stack_size(self.fn.__name__, self.params, args, dots)
        if k is not None:
            try:
                compiled = self._compile(signature, mode=VECTOR_TANGENT)
            except VectorModeUnsupported:
                return self._tangents_one_by_one(args, dots, k)
            return vector_tangent(self, compiled, args, dots, k)
        compiled = self._compile(signature, mode=TANGENT)
        entry = compiled.entry
        _, directions = self._checked_with(compiled, args, dots, "_dot")
        values = dict(zip(self.params, args))
        outputs = self._outputs_for(entry.key.signature)
        # the generated code carries a written array's tangent in its direction's array, which
        # ends as the tangent of the final value: the caller's, for an output only
        directions = [np.array(direction, copy=True)
                      if param in entry.written_arrays and param not in outputs else direction
                      for param, direction in zip(entry.dot_params, directions)]

        returned = compiled.tangent(*args, *directions)
        tangents = dict(zip(entry.dot_params, directions))
        out = []
        for output in outputs:
            if output == RETURN_OUTPUT:
                out.append(float(returned[1]))
            else:
                out.append(tangents.get(output, np.zeros_like(values[output])))
        return tuple(out)

    def _tangents_one_by_one(self, args, dots, k):
        """Vector mode's results, one direction per run, for kernels vector mode cannot do
        (calls of derivative rules): the first k - 1 runs work on copies, the last on the
        arguments themselves, so they end as the primal leaves them."""
        outputs = check_stacks(self, self._compile(signature_of(self.fn.__name__, self.params,
                                                                args), mode=TANGENT),
                               args, dots)
        runs = []
        for direction in range(k):
            run_args = args if direction == k - 1 else [
                np.array(arg, copy=True) if isinstance(arg, np.ndarray) else arg
                for arg in args]
            runs.append(self.tangent(*run_args, **{key: np.array(stack[direction], copy=True)
                                                   for key, stack in dots.items()}))
        out = []
        for position, output in enumerate(outputs):
            stack = np.stack([np.asarray(run[position], dtype=np.float64) for run in runs])
            if output != RETURN_OUTPUT and output + "_dot" in dots:
                dots[output + "_dot"][...] = stack
                stack = dots[output + "_dot"]
            out.append(stack)
        return tuple(out)

    # running ------------------------------------------------------------------------------------

    def _run(self, args, bars):
        signature, matrices = self._signature_or_matrices(args)
        if matrices is not None:
            inner_bars = matrices.companions(args, bars, "_bar")
            with matrices.in_user_terms():
                value, results, stats = matrices.inner._run(matrices.arguments(args), inner_bars)
            return value, matrices.results(args, results, bars), stats
        compiled = self._compile(signature)
        entry = compiled.entry
        # Every check comes before anything runs: a bad call leaves the user's arrays as they were.
        arrays, bar_arrays, out_bar = self._checked(compiled, args, dict(bars))
        # the bar of an array the kernel writes seeds the reverse sweep with the adjoint of its
        # final value, which is the caller's for an output only: another's starts at zero
        for param, bar in zip(entry.bar_params, bar_arrays):
            if param in entry.written_arrays and param not in entry.key.outputs:
                bar[...] = 0.0

        tape = compiled.make_tape()
        value = compiled.forward(*args, tape)
        tape.note_forward_end()         # the peak (the compiled forward wrapper did it already)
        compiled.remember(tape)
        finals = {param: arrays[param].copy() for param in entry.restored_arrays}
        seed = [out_bar] if entry.returns else []
        scalar_bars = compiled.reverse(*args, *bar_arrays, *seed, tape)
        for param, final in finals.items():
            arrays[param][...] = final
        adjoints = dict(zip(entry.bar_params, bar_arrays))
        if scalar_bars:
            adjoints.update(zip(entry.scalar_bar_params, map(float, scalar_bars)))
        results = tuple([adjoints.get(param, 0.0) for param in self.wrt])
        stats = TapeStats.of(tape)
        compiled.release(tape)
        return value, results, stats

    def _checked(self, compiled, args, bars):
        """``(arrays by name, the bar arrays in the reverse sweep's order, out_bar)``, after
        checking every argument and adjoint of an adjoint call; raises ArgumentError."""
        name = self.fn.__name__
        entry = compiled.entry
        out_bar = 1.0
        if "out_bar" in bars:
            if RETURN_OUTPUT not in entry.key.outputs:
                raise ArgumentError(f"{name}: out_bar= is the adjoint of the return value, "
                                    "which is not an output of this adjoint")
            out_bar = check_out_bar(name, bars.pop("out_bar"))
        # an unknown key first: a misspelt seed (y_bar= for x_bar=) is named as such
        arrays, bar_arrays = self._checked_with(compiled, args, bars, "_bar")
        for param in entry.bar_params:
            if param in entry.key.outputs and param + "_bar" not in bars:
                raise ArgumentError(f"{name}: pass {param}_bar=, the adjoint of the final value "
                                    f"of the output '{param}'")
        return arrays, bar_arrays, out_bar

    def _checked_with(self, compiled, args, given, suffix):
        """The checks an adjoint (``suffix="_bar"``) or a tangent (``"_dot"``) call makes
        before anything runs: the arguments (contiguity for the compiled backend, writeable
        where written), then the companions ``<param><suffix>`` (bars or directions): no
        unknown key, float64 arrays of their primal's shape (or floats for scalars), and no
        aliasing of anything written.  Returns (the argument arrays by name, the companions in
        the compiled code's order; zeros for the ones not given).  What to check is worked out
        on the first such call (a :class:`~adsrc.runtime.call_checks.CallChecks`)."""
        checks = compiled.checks.get(suffix)
        if checks is None:
            entry = compiled.entry
            if suffix == "_bar":
                companions = entry.bar_params
                allowed = [param + suffix for param in companions
                           if param in self.wrt or param in entry.key.outputs]
                written_companions = companions      # every adjoint is written
                what, hint = "adjoint", " (and out_bar= for the return value)"
            else:
                companions = entry.dot_params
                allowed = [param + suffix for param in self.wrt]
                # an output's direction ends as its tangent; a direction of another array
                # the kernel writes is copied before the run (tangent()), and the others
                # are only read: the compiled code takes them as const
                written_companions = [param for param in companions
                                      if param in entry.written_arrays
                                      and param in entry.key.outputs]
                what, hint = "direction", ""
            checks = compiled.checks[suffix] = CallChecks(
                self.fn.__name__, self.params, entry.key.signature, entry.written_arrays,
                companions, suffix, allowed, written_companions, what, hint,
                contiguous=compiled.backend == "cython",
                buffers_ok=cython_build.buffers_ok() if compiled.backend == "cython" else None)
        return checks(args, given)


def differentiate(fn=None, *, wrt, outputs=None, backend=None):
    """Make a kernel differentiable; usable as ``@differentiate(wrt=...)`` or a function.

    ``backend`` is "cython" (compiled; the default when a C compiler is available) or
    "python" (the reference)."""
    if fn is None:
        return lambda function: Differentiable(function, wrt, outputs, backend)
    return Differentiable(fn, wrt, outputs, backend)


def value_and_grad(f, wrt, backend=None):
    """``(value, gradients)`` of a kernel returning a scalar; arrays are mutated as ``f`` would."""
    kernel = Differentiable(f, wrt, outputs=(RETURN_OUTPUT,), backend=backend)
    single = isinstance(wrt, (str, int))

    def value_and_gradient(*args, **keywords):
        check_no_keywords(kernel.fn.__name__, kernel.params, keywords)
        value, results, _ = kernel._run(args, {})
        return float(value), (results[0] if single else results)

    return functools.wraps(kernel.fn)(value_and_gradient)


def grad(f, wrt, backend=None):
    """Gradients of a kernel returning a scalar, in the order of ``wrt``."""
    both = value_and_grad(f, wrt, backend)

    def gradient(*args, **keywords):
        return both(*args, **keywords)[1]

    return functools.wraps(both)(gradient)
