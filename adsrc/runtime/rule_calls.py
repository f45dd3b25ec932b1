"""What generated code calls for a library call with a derivative rule (:mod:`adsrc.rules.library`).

The generated module refers to ``_rules.<rule name>.<method>(...)``; this module checks what a
rule's parts return (a wrong shape from a user's backward part is an error, not a broadcast)
and keeps the saved values safe from later mutation: an array the forward part saved that
shares memory with an argument the kernel may overwrite before its reverse sweep is copied
first.  Which arguments may change is decided by the transformation (``changing``: their
positions), so arrays that provably stay unchanged are never copied.

Array results are written into the target array (``out``), so the kernel keeps owning every
array it names; the reverse sweep restores the target's old value when the analyses ask for it
(:meth:`RuleCalls.keep` and :meth:`RuleCalls.restore`).
"""

import numpy as np

from adsrc.errors import AdsrcError
from adsrc.runtime.arguments import is_sparse
from adsrc.rules import library


class BoundRule:
    """The calls generated code makes for one rule."""

    def __init__(self, rule):
        self.rule = rule

    # primal -------------------------------------------------------------------------------------

    def __call__(self, *args):
        return self._scalar(self.rule.function(*_arrays(args)))

    def into(self, out, *args):
        self._store(out, self.rule.function(*_arrays(args)))

    # forward sweep ------------------------------------------------------------------------------

    def record(self, tape, changing, *args):
        value, saved = self._forward(changing, args)
        tape.push_object(saved)
        return self._scalar(value)

    def record_into(self, tape, changing, out, *args):
        value, saved = self._forward(changing, args)
        self._store(out, value)
        tape.push_object(saved)

    def _forward(self, changing, args):
        if self.rule.backward_function is None:
            raise AdsrcError(f"{self.rule!r} has no backward part: declare it with "
                             f"@<forward>.backward")
        args = _arrays(args)
        result = self.rule.forward(*args)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise AdsrcError(f"the forward part of {self.rule!r} must return (value, saved)")
        value, saved = result
        return value, _detach(saved, [np.asarray(args[k]) for k in changing])

    # reverse sweep ------------------------------------------------------------------------------

    def reverse(self, tape, result_bar, *bars):
        """Adjoint of a float result; returns the adjoints of the float scalar arguments."""
        return self._backward(tape, float(result_bar), bars)

    def reverse_into(self, tape, out_bar, *bars):
        """Adjoint of an array result stored into ``out``: ``out_bar`` is consumed (zeroed:
        the store overwrote all of ``out``); returns the float scalar arguments' adjoints."""
        out_bar = np.asarray(out_bar)
        seed = out_bar.copy()
        out_bar[...] = 0.0
        return self._backward(tape, seed, bars)

    def _backward(self, tape, seed, bars):
        saved = tape.pop_object()
        return self._accumulate(self.rule.backward_function(saved, seed), bars)

    def _accumulate(self, adjoints, bars):
        """Add array adjoints into their bars; returns those of the float scalars."""
        if not isinstance(adjoints, (tuple, list)):
            adjoints = (adjoints,)
        if len(adjoints) != len(bars):
            raise AdsrcError(f"the backward part of {self.rule!r} returned {len(adjoints)} "
                             f"adjoints for {len(bars)} arguments")
        scalars = []
        for position, (adjoint, bar) in enumerate(zip(adjoints, bars)):
            if isinstance(bar, float):             # a float scalar argument: returned
                scalars.append(0.0 if adjoint is None else float(adjoint))
            elif bar is not None and adjoint is not None:
                bar = np.asarray(bar)
                adjoint = np.asarray(adjoint)
                if adjoint.shape != bar.shape:
                    raise AdsrcError(f"the backward part of {self.rule!r} returned an adjoint "
                                     f"of shape {adjoint.shape} for argument {position + 1}, "
                                     f"of shape {bar.shape}")
                bar += adjoint
        return tuple(scalars)

    # tangent of the forward and reverse sweeps (Hessian-vector products) ------------------------
    #
    # The forward sweep's tangent saves the arguments and their tangents (copied where they may
    # change) instead of what the forward part saves: the reverse sweep's tangent calls the
    # rule's backward_tangent part with them.

    def record_dot(self, tape, changing, *args_and_dots):
        args, dots = self._args_and_dots(args_and_dots)
        value, value_dot = self._call_tangent(args, dots)
        self._push_point(tape, changing, args, dots)
        return self._scalar(value), self._scalar(value_dot)

    def record_into_dot(self, tape, changing, out, out_dot, *args_and_dots):
        args, dots = self._args_and_dots(args_and_dots)
        value, value_dot = self._call_tangent(args, dots)
        # saved before the stores: the result may overwrite an argument (u[:] = solve(A, u))
        self._push_point(tape, changing, args, dots)
        self._store(out, value)
        self._store(out_dot, value_dot)

    def _push_point(self, tape, changing, args, dots):
        moving = [np.asarray(args[k]) for k in changing] \
            + [np.asarray(dots[k]) for k in changing if dots[k] is not None]
        tape.push_object((_detach(args, moving), _detach(tuple(dots), moving)))

    def reverse_dot(self, tape, result_bar, result_bar_dot, *bars_and_dots):
        """Tangent of :meth:`reverse`: returns the float scalar arguments' adjoints, then
        their tangents."""
        return self._backward_dot(tape, float(result_bar), float(result_bar_dot), bars_and_dots)

    def reverse_into_dot(self, tape, out_bar, out_bar_dot, *bars_and_dots):
        """Tangent of :meth:`reverse_into`."""
        seeds = []
        for bar in (out_bar, out_bar_dot):
            bar = np.asarray(bar)
            seeds.append(bar.copy())
            bar[...] = 0.0
        return self._backward_dot(tape, *seeds, bars_and_dots)

    def _backward_dot(self, tape, seed, seed_dot, bars_and_dots):
        if self.rule.backward_tangent_function is None:
            raise AdsrcError(f"{self.rule!r} has no backward_tangent part")
        args, dots = tape.pop_object()
        adjoints, tangents = self.rule.backward_tangent_function(args, dots, seed, seed_dot)
        half = len(bars_and_dots) // 2
        scalars = self._accumulate(adjoints, bars_and_dots[:half])
        return scalars + self._accumulate(tangents, bars_and_dots[half:])

    # tangent ------------------------------------------------------------------------------------

    def tangent(self, *args_and_dots):
        value, value_dot = self._call_tangent(*self._args_and_dots(args_and_dots))
        return self._scalar(value), self._scalar(value_dot)

    def tangent_into(self, out, out_dot, *args_and_dots):
        value, value_dot = self._call_tangent(*self._args_and_dots(args_and_dots))
        self._store(out, value)
        self._store(out_dot, value_dot)

    @staticmethod
    def _args_and_dots(args_and_dots):
        """The arguments, and their tangents with zeros for float arguments without one."""
        args_and_dots = _arrays(args_and_dots)
        half = len(args_and_dots) // 2
        args, dots = args_and_dots[:half], list(args_and_dots[half:])
        for position, (arg, direction) in enumerate(zip(args, dots)):
            if direction is None and _is_float(arg):
                dots[position] = np.zeros_like(np.asarray(arg, dtype=float)) \
                    if np.ndim(arg) else 0.0
        return args, dots

    def _call_tangent(self, args, dots):
        if self.rule.tangent_function is None:
            raise AdsrcError(f"{self.rule!r} has no tangent part: declare it with "
                             f"@<forward>.tangent")
        result = self.rule.tangent_function(*args, *dots)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise AdsrcError(f"the tangent part of {self.rule!r} must return "
                             f"(value, value_dot)")
        return result

    # checks -------------------------------------------------------------------------------------

    def _scalar(self, value):
        if np.ndim(value) != 0:
            raise AdsrcError(f"{self.rule!r} is declared to return a float, but returned an "
                             f"array of shape {np.shape(value)}")
        return float(value)

    def _store(self, out, value):
        out = np.asarray(out)
        value = np.asarray(value)
        if value.shape != out.shape:
            raise AdsrcError(f"{self.rule!r} returned an array of shape {value.shape}, stored "
                             f"into an array of shape {out.shape}")
        out[...] = value


def _arrays(values):
    """The arguments as the rule's parts expect them: compiled code passes its arrays as Cython
    memoryviews, which become NumPy arrays (views, no copy)."""
    return tuple(value if value is None or isinstance(value, (float, int, np.ndarray))
                 else np.asarray(value) for value in values)


def _is_float(arg):
    return isinstance(arg, float) or (np.ndim(arg) and np.asarray(arg).dtype.kind == "f")


def _detach(saved, changing):
    """``saved`` with every array sharing memory with a ``changing`` array replaced by a copy
    (inside tuples, named ones too, lists and dicts, and the arrays of SciPy sparse matrices).
    Another object holding such an array among its attributes is refused: adsrc cannot copy
    it, and the backward part would read the array as the kernel left it."""
    if not changing:
        return saved
    if isinstance(saved, np.ndarray):
        if any(np.shares_memory(saved, array) for array in changing):
            return saved.copy()
        return saved
    if is_sparse(saved):
        parts = [getattr(saved, attr) for attr in ("data", "indices", "indptr", "row", "col")
                 if isinstance(getattr(saved, attr, None), np.ndarray)]
        if any(np.shares_memory(part, array) for part in parts for array in changing):
            return saved.copy()
        return saved
    if isinstance(saved, tuple):
        items = [_detach(item, changing) for item in saved]
        return saved._make(items) if hasattr(saved, "_fields") else tuple(items)
    if isinstance(saved, list):
        return [_detach(item, changing) for item in saved]
    if isinstance(saved, dict):
        return {key: _detach(item, changing) for key, item in saved.items()}
    attributes = getattr(saved, "__dict__", None)
    if isinstance(attributes, dict) and any(
            _detach(value, changing) is not value for value in attributes.values()):
        raise AdsrcError(f"the forward part of a rule saved a {type(saved).__name__} holding an "
                         f"array the kernel may overwrite before its reverse sweep: save it in "
                         f"a tuple, list or dict, where adsrc copies it")
    return saved


class RuleCalls:
    """The ``_rules`` object of a generated module: ``_rules.<name>`` is the bound rule."""

    def __getattr__(self, rule_name):
        if rule_name.startswith("__"):
            raise AttributeError(rule_name)
        return BoundRule(library.by_name(rule_name))

    @staticmethod
    def keep(tape, out):
        """Save a copy of an array a rule call is about to overwrite."""
        tape.push_object(np.array(out, copy=True))

    @staticmethod
    def restore(tape, out):
        np.asarray(out)[...] = tape.pop_object()


RULES = RuleCalls()
