"""Random kernels in the adsrc language subset, for property-based gradient tests.

``kernels()`` is a hypothesis strategy.  Each example is a :class:`KernelCase`
holding the *source text* of a small module that defines ``kernel(...)`` (and,
when used, a few module-level helper functions), plus everything needed to
call it: argument names and kinds, a seed for the argument values, the
``wrt`` set to differentiate against, and the arrays the kernel mutates.

Every case comes in two renderings of the same program:

* ``case.source``: the plain kernel, the thing handed to adsrc;
* ``case.instrumented_source``: identical arithmetic, but every comparison on
  float data (``if``/``elif``/``break``/``continue`` conditions) and every kink
  (``abs``, ``np.maximum``, ``np.minimum``) goes through a small module-level
  helper (``_gt``, ``_abs``, ...) that records the distance to the kink (the
  *margin*) and the branch taken (the *trace*).  The helpers compare real
  parts, so the same module also runs on complex numbers: with ``math``/``np``
  swapped for complex-capable shims it gives complex-step derivatives, an
  oracle that is exact to rounding and independent of adsrc.

Finite differences are only valid when no perturbation flips a branch.  The
harness below reports the smallest margin at the evaluation point (``evaluate``;
the test rejects points closer than ``MARGIN`` to a kink), probes random
simultaneous perturbations (``branch_stable_under``, ``check_grads_probe``),
and checks for every finite-difference evaluation that the trace is the one of
the unperturbed point (``central_difference_grad``).

Generation never takes a construct outside docs/API.md's subset.  Features can
be switched off for triage with ``kernels(disable={...})`` or the environment
variable ``ADSRC_RK_DISABLE`` (comma-separated feature names, see FEATURES).
"""

from __future__ import annotations

import cmath
import dataclasses
import hashlib
import importlib.util
import math
import os
import sys
import types

import numpy as np
from hypothesis import strategies as st

# Smallest admissible distance of a float comparison (or of abs/maximum/minimum
# arguments) from its kink at the evaluation point.
MARGIN = 1e-3
MIN_LEN, MAX_LEN = 6, 10  # length of every 1-D array (and rows of the 2-D one)
NCOLS = 3  # columns of the 2-D array M
MAX_TRIPS = 100  # cap on the product of nested trip counts (keeps FD cheap)
MAX_STMTS = 14  # soft cap on the number of generated statements per kernel

# Feature name -> nominal probability / weight knob.  Names double as the tags
# in ``KernelCase.features`` and as the keys accepted by ``disable``.
FEATURES = {
    # signature
    "arg_z": 0.5, "arg_b": 0.5, "idx": 0.6, "array2d": 0.25, "local_array": 0.3,
    "int32_idx": 0.2, "idx_repeats": 0.5, "arg_order_shuffled": 0.3,
    "wrt_subset": 0.5, "wrt_positions": 0.2, "wrt_single_str": 0.5,
    "extra_outputs": 0.3,
    # expressions (weights relative to one another)
    "arith": 5, "scale": 2, "neg": 1, "div": 1.2, "sin": 1, "cos": 1, "tanh": 1,
    "exp": 1, "sqrt": 1, "log": 1, "pow2": 0.7, "pow3": 0.5, "np_power": 0.2,
    "np_scalar_func": 0.15, "abs": 0.5, "maxmin": 0.8, "call": 0.5,
    "np_sum": 0.4, "np_dot": 0.4, "np_mean": 0.2, "np_max": 0.2, "const_index": 1,
    "offset_index": 2, "idx_read": 2, "reversed_index": 0.5, "wrapped_index": 0.5,
    "guarded_read": 0.15,
    # statements
    "elem_assign": 4, "elem_iadd": 3, "elem_isub": 2, "elem_imul": 1.0,
    "alias_rw": 0.35, "temp": 3, "tuple_assign": 0.3, "for": 2, "if_float": 3, "if_int": 1,
    "elif": 0.3, "else": 0.5, "while": 1, "break": 0.5, "continue": 0.5, "nested_jump": 0.2,
    "early_return": 0.3,
    "vector_stmt": 1.5, "slice_stmt": 0.5, "call_mut": 0.5, "array_rebind": 0.3,
    "arg_rebind": 0.15, "vector_where": 0.15, "vector_gather": 0.35, "vector_roll": 0.15,
    "matrix_broadcast": 0.3, "vector_cumulative": 0.15, "array_helper": 0.2,
    "several_values": 0.2,
    "scalar_arg_overwrite": 0.6, "len_bound": 0.25, "reverse_loop": 1,
    "step2_loop": 0.8, "triangular_loop": 6, "return_np": 0.3,
    # user calls / np.sum / np.dot inside if/elif/break/continue conditions
    "call_in_cond": 0.6,
}

_HELPER_SOURCES = {
    "smooth": (
        "def smooth(u, v):\n"
        "    return u * math.tanh(v) + 0.5 * math.sin(u)\n"
    ),
    "sq_at": (
        "def sq_at(arr, k):\n"
        "    return arr[k] * arr[k]\n"
    ),
    "damp": (
        "def damp(u, d):\n"
        "    r = u\n"
        "    if d > 0:\n"
        "        r = damp(0.5 * u + 0.25 * math.sin(u), d - 1)\n"
        "    return r\n"
    ),
    "bump": (
        "def bump(arr, k, v):\n"
        "    arr[k] += 0.5 * v\n"
    ),
    # helpers returning arrays, which adsrc inlines into their callers: an expression, an
    # array allocated and filled in a loop (reading a neighbour, wrapped at 0), and one that
    # rebinds its parameter and calls another
    "blend": (
        "def blend(u, v):\n"
        "    return u * np.tanh(v) - 0.5 * u\n"
    ),
    "neighbours": (
        "def neighbours(v, s):\n"
        "    w = np.zeros_like(v)\n"
        "    for i in range(len(v)):\n"
        "        w[i] = np.sin(v[i]) + s * v[i - 1]\n"
        "    return w\n"
    ),
    "relaxed": (
        "def relaxed(u, v):\n"
        "    u = 0.5 * u + 0.25 * neighbours(v, 0.5)\n"
        "    return u\n"
    ),
    # helpers returning several values, unpacked by their callers: two floats, and an array of
    # its own, a float and its argument (Python's alias)
    "pair": (
        "def pair(u, v):\n"
        "    s = u * math.tanh(v)\n"
        "    return s, v - 0.5 * s\n"
    ),
    "spread": (
        "def spread(u, a):\n"
        "    w = np.tanh(u) * a\n"
        "    return w, np.sum(w * u), u\n"
    ),
}

# Prepended to the instrumented rendering.  Works for float and complex values
# (complex step): comparisons and kinks look at real parts only.
_INSTRUMENT_PRELUDE = '''\
import numpy as _np_real

_MARGINS = []
_TRACE = []


def _record(d, outcome):
    _MARGINS.append(float(abs(d.real)))
    _TRACE.append(bool(outcome))
    return outcome


def _gt(a, b):
    return _record(a - b, a.real > b.real)


def _ge(a, b):
    return _record(a - b, a.real >= b.real)


def _lt(a, b):
    return _record(a - b, a.real < b.real)


def _le(a, b):
    return _record(a - b, a.real <= b.real)


def _abs(a):
    _record(a, a.real >= 0)
    if isinstance(a, complex):
        return a if a.real >= 0 else -a
    return abs(a)


def _maximum(a, b):
    _record(a - b, a.real >= b.real)
    if isinstance(a, complex) or isinstance(b, complex):
        return a if a.real >= b.real else b
    return _np_real.maximum(a, b)


def _minimum(a, b):
    _record(a - b, a.real <= b.real)
    if isinstance(a, complex) or isinstance(b, complex):
        return a if a.real <= b.real else b
    return _np_real.minimum(a, b)


def _where_gt(a, b, chosen, otherwise):
    d = _np_real.asarray(a - b)
    for v in d.ravel():
        _record(v, v.real > 0)
    return _np_real.where(d.real > 0, chosen, otherwise)


def _extremum(a, sign):
    """np.max (sign 1) or np.min (sign -1): its kink is where the two largest tie."""
    r = sign * a.real
    order = _np_real.argsort(r)
    _record(r[order[-1]] - r[order[-2]], True)
    _TRACE.append(int(order[-1]))
    return a[order[-1]]
'''

_CMP_INSTR = {">": "_gt", ">=": "_ge", "<": "_lt", "<=": "_le"}


# --------------------------------------------------------------------------
# Tiny code model: expressions and lines render to plain or instrumented text.
# --------------------------------------------------------------------------
class Node:
    """A template ``plain`` (and optionally ``instr``) over child nodes.

    In templates, ``{0}`` inserts child 0 as is and ``{p0}`` inserts it in
    parentheses unless it is atomic (a name, element, call or constant).
    """

    __slots__ = ("plain", "instr", "kids", "atomic")

    def __init__(self, plain, kids=(), instr=None, atomic=True):
        self.plain = plain
        self.instr = instr
        self.kids = tuple(kids)
        self.atomic = atomic

    def render(self, instr=False):
        fmt = self.instr if (instr and self.instr is not None) else self.plain
        raw = [k.render(instr) for k in self.kids]
        wrapped = {
            f"p{n}": (r if k.atomic else f"({r})")
            for n, (k, r) in enumerate(zip(self.kids, raw))
        }
        return fmt.format(*raw, **wrapped)


def _atom(text):
    return Node(text.replace("{", "{{").replace("}", "}}"))


def _op(fmt, *kids, instr=None):
    return Node(fmt, kids, instr=instr, atomic=False)


def _call(fmt, *kids, instr=None):
    return Node(fmt, kids, instr=instr, atomic=True)


@dataclasses.dataclass(frozen=True)
class IVar:
    """An int loop counter with static bounds: lo <= v <= n-1-hi_n (or hi_c)."""

    name: str
    lo: int
    hi_n: int | None = None
    hi_c: int | None = None

    def max_plus(self):
        """Largest offset o with v + o always a valid index (n >= MIN_LEN)."""
        if self.hi_n is not None:
            return self.hi_n
        return MIN_LEN - 1 - self.hi_c

    def col_range(self):
        """Offsets o with 0 <= v + o < NCOLS, or None if v may exceed the columns."""
        if self.hi_c is None or self.hi_c > NCOLS - 1:
            return None
        return (-self.lo, NCOLS - 1 - self.hi_c)


@dataclasses.dataclass(frozen=True)
class Ctx:
    ivars: tuple = ()
    temps: tuple = ()
    loop_depth: int = 0
    trips: int = 1
    in_for: bool = False  # directly inside a for body (break/continue allowed)
    if_depth: int = 0


_CONSTS = ("0.5", "0.25", "0.3", "0.75", "1.5", "0.1", "2.0", "0.2", "0.6", "1.25")
_LOSS_CONSTS = ("0.5", "0.25", "1.0", "0.3", "0.75")
_THRESHOLDS = ("0.0", "0.3", "-0.2", "0.5", "-0.4", "0.1", "0.8")


class _Gen:
    def __init__(self, draw, disabled):
        self.draw = draw
        self.disabled = frozenset(disabled)
        self.features = set()
        self.reads = set()
        self.written = set()
        self.helpers = set()
        self.n_stmts = 0
        self.n_whiles = 0
        self.n_locals = 0
        self.no_calls = False  # True while generating a condition without calls

    # -- choice primitives (all shrink towards the first / "off" option) ------
    def _int(self, lo, hi):
        return self.draw(st.integers(lo, hi))

    def on(self, feature, p=None):
        if feature in self.disabled:
            return False
        p = FEATURES[feature] if p is None else p
        return self._int(0, 99) >= 100 - int(round(100 * p))

    def w(self, feature, cond=True):
        """Weight of an option gated by a feature (0 when disabled/impossible)."""
        if not cond or feature in self.disabled:
            return 0
        return FEATURES[feature]

    def choose(self, options):
        options = [(int(round(10 * wt)), v) for wt, v in options]
        options = [(wt, v) for wt, v in options if wt > 0]
        total = sum(wt for wt, _ in options)
        r = self._int(0, total - 1)
        for wt, v in options:
            if r < wt:
                return v
            r -= wt
        raise AssertionError("unreachable")

    def pick(self, seq):
        return seq[self._int(0, len(seq) - 1)]

    def const(self):
        return _atom(self.pick(_CONSTS))

    # -- indices ---------------------------------------------------------------
    def index(self, ctx, allow_indirect=True):
        """A valid row index (0 <= value < n) as text."""
        has_iv = bool(ctx.ivars)
        kind = self.choose([
            (3 if has_iv else 0, "var"),
            (self.w("const_index", True) if has_iv else 1, "const"),
            (self.w("offset_index", has_iv), "offset"),
            (self.w("idx_read", self.has_idx and allow_indirect), "indirect"),
            (self.w("reversed_index", has_iv), "rev"),
            (self.w("wrapped_index", has_iv), "wrapped"),
        ])
        if kind == "var":
            return self.pick(ctx.ivars).name
        if kind == "const":
            self.features.add("const_index")
            return str(self._int(0, MIN_LEN - 1))
        if kind == "offset":
            v = self.pick(ctx.ivars)
            offs = [o for o in range(-v.lo, v.max_plus() + 1) if o != 0 and abs(o) <= 2]
            if not offs:
                return v.name
            o = self.pick(offs)
            self.features.add("offset_index")
            return f"{v.name} + {o}" if o > 0 else f"{v.name} - {-o}"
        if kind == "indirect":
            self.features.add("idx_read")
            inner = self.index(ctx, allow_indirect=self.on("idx_read", 0.1))
            return f"idx[{inner}]"
        if kind == "wrapped":
            # negative for the first trips: counted from the end, as Python does (v - o >= -2,
            # and n >= MIN_LEN), or brought into range by Python's modulo
            v = self.pick(ctx.ivars)
            self.features.add("wrapped_index")
            o = self._int(-2, 2)
            if self._int(0, 1):
                return f"({v.name} + {o}) % {self.nname}" if o else f"{v.name} % {self.nname}"
            return f"{v.name} - {v.lo + self._int(1, 2)}"
        v = self.pick(ctx.ivars)
        self.features.add("reversed_index")
        return f"{self.nname} - 1 - {v.name}"

    def col_index(self, ctx):
        cands = [v for v in ctx.ivars if v.col_range() is not None]
        if cands and self._int(0, 3) > 0:
            v = self.pick(cands)
            lo, hi = v.col_range()
            o = self.pick([o for o in range(lo, hi + 1)])
            if o == 0:
                return v.name
            return f"{v.name} + {o}" if o > 0 else f"{v.name} - {-o}"
        return str(self._int(0, NCOLS - 1))

    # -- expressions -----------------------------------------------------------
    def elem(self, ctx, arr=None):
        if arr is None:
            arr = self.pick(self.arrays1d)
        self.reads.add(arr)
        if ctx.ivars and self.on("guarded_read"):
            # a read past the end in the trips where the branch is not chosen, which Python
            # never makes (nor may the adjoint or tangent)
            self.features.add("guarded_read")
            v, o, k = self.pick(ctx.ivars).name, self._int(1, 2), self.pick(_CONSTS)
            if self._int(0, 1):
                return _atom(f"({arr}[{v} + {o}] if {v} < {self.nname} - {o} else {k})")
            return _atom(f"({k} if {v} >= {self.nname} - {o} else {arr}[{v} + {o}])")
        return _atom(f"{arr}[{self.index(ctx)}]")

    def leaf(self, ctx):
        kind = self.choose([
            (4, "elem"),
            (2, "scalar"),
            (2 if ctx.temps else 0, "temp"),
            (1, "const"),
            (self.w("array2d", self.has_m), "elem2d"),
            (self.w("np_sum", ctx.trips <= 10 and not self.no_calls), "sum"),
            (self.w("np_dot", ctx.trips <= 10 and not self.no_calls), "dot"),
            (self.w("np_mean", ctx.trips <= 10 and not self.no_calls), "mean"),
            (self.w("np_max", ctx.trips <= 10 and not self.no_calls), "max"),
        ])
        if kind == "elem":
            return self.elem(ctx)
        if kind == "scalar":
            return _atom(self.pick(self.fscalars))
        if kind == "temp":
            return _atom(self.pick(ctx.temps))
        if kind == "const":
            return self.const()
        if kind == "elem2d":
            self.features.add("array2d")
            self.reads.add("M")
            return _atom(f"M[{self.index(ctx)}, {self.col_index(ctx)}]")
        arrs = self.arrays1d
        if kind == "mean":
            self.features.add("np_mean")
            a = self.pick(arrs)
            self.reads.add(a)
            return _atom(f"np.mean({a})")
        if kind == "max":
            self.features.add("np_max")
            a, fn = self.pick(arrs), self.pick(("max", "min"))
            self.reads.add(a)
            return Node(f"np.{fn}({a})", instr=f"_extremum({a}, {1 if fn == 'max' else -1})")
        if kind == "sum":
            self.features.add("np_sum")
            a = self.pick(arrs)
            self.reads.add(a)
            return _atom(f"np.sum({a})")
        self.features.add("np_dot")
        a, b = self.pick(arrs), self.pick(arrs)
        self.reads.update((a, b))
        return _atom(f"np.dot({a}, {b})")

    def expr(self, ctx, depth):
        if depth <= 0:
            return self.leaf(ctx)
        kind = self.choose([
            (4, "leaf"),
            (self.w("arith"), "arith"),
            (self.w("scale"), "scale"),
            (self.w("sin") + self.w("cos") + self.w("tanh"), "trig"),
            (self.w("exp"), "exp"),
            (self.w("sqrt"), "sqrt"),
            (self.w("log"), "log"),
            (self.w("div"), "div"),
            (self.w("pow2") + self.w("pow3"), "pow"),
            (self.w("np_power"), "np_power"),
            (self.w("abs"), "abs"),
            (self.w("maxmin"), "maxmin"),
            (self.w("call", not self.no_calls), "call"),
            (self.w("neg"), "neg"),
        ])
        sub = lambda: self.expr(ctx, depth - 1)  # noqa: E731
        mod = "np" if self.on("np_scalar_func") else "math"
        if kind == "leaf":
            return self.leaf(ctx)
        if mod == "np" and kind in ("trig", "exp", "sqrt", "log"):
            self.features.add("np_scalar_func")
        if kind == "arith":
            self.features.add("arith")
            op = self.pick(("+", "-", "*"))
            return _op("{p0} %s {p1}" % op, sub(), sub())
        if kind == "scale":
            self.features.add("scale")
            return _op("{0} * {p1}", self.const(), sub())
        if kind == "trig":
            fn = self.choose([(self.w(f), f) for f in ("sin", "cos", "tanh")])
            self.features.add(fn)
            return _call(f"{mod}.{fn}({{0}})", sub())
        if kind == "exp":
            self.features.add("exp")
            return _call(f"{mod}.exp(0.1 * {{p0}})", sub())
        if kind == "sqrt":
            self.features.add("sqrt")
            return _call(f"{mod}.sqrt(1.0 + {{p0}} * {{p0}})", sub())
        if kind == "log":
            self.features.add("log")
            return _call(f"{mod}.log(2.0 + {mod}.sin({{0}}))", sub())
        if kind == "div":
            self.features.add("div")
            den = self.expr(ctx, min(depth - 1, 1))
            return _op("{p0} / (1.0 + {p1} * {p1})", sub(), den)
        if kind == "pow":
            e = self.choose([(self.w("pow2"), 2), (self.w("pow3"), 3)])
            self.features.add(f"pow{e}")
            return _op("{p0} ** %d" % e, sub())
        if kind == "np_power":
            self.features.add("np_power")
            return _call("np.power({0}, %d)" % self.pick((2, 3)), sub())
        if kind == "abs":
            self.features.add("abs")
            return _call("abs({0})", sub(), instr="_abs({0})")
        if kind == "maxmin":
            self.features.add("maxmin")
            fn = self.pick(("maximum", "minimum"))
            return _call(f"np.{fn}({{0}}, {{1}})", sub(), sub(), instr=f"_{fn}({{0}}, {{1}})")
        if kind == "call":
            self.features.add("call")
            h = self.pick(("smooth", "sq_at", "damp"))
            self.helpers.add(h)
            if h == "smooth":
                return _call("smooth({0}, {1})", sub(), sub())
            if h == "sq_at":
                arr = self.pick(self.arrays1d)
                self.reads.add(arr)
                return _atom(f"sq_at({arr}, {self.index(ctx)})")
            return _call("damp({0}, %d)" % self._int(1, 2), sub())
        self.features.add("neg")
        return _op("-{p0}", sub())

    # -- conditions ------------------------------------------------------------
    def cond(self, ctx):
        int_ok = bool(ctx.ivars) or self.has_idx
        if not (self.w("if_float") or self.w("if_int", int_ok)):  # both switched off
            return _atom(f"{self.nname} > {self._int(1, MIN_LEN - 2)}")
        kind = self.choose([(self.w("if_float"), "float"), (self.w("if_int", int_ok), "int")])
        if kind == "int":
            self.features.add("if_int")
            lhs = self.index(ctx)
            op = self.pick((">", "<", ">=", "<=", "=="))
            return _atom(f"{lhs} {op} {self._int(1, MIN_LEN - 2)}")
        self.features.add("if_float")
        self.no_calls = not self.on("call_in_cond")
        try:
            lhs = self.expr(ctx, self._int(0, 1))
            rhs = _atom(self.pick(_THRESHOLDS)) if self._int(0, 2) else self.leaf(ctx)
        finally:
            self.no_calls = False
        op = self.pick((">", "<", ">=", "<="))
        node = Node("{0} %s {1}" % op, (lhs, rhs), instr=_CMP_INSTR[op] + "({0}, {1})",
                    atomic=False)
        text = node.render()
        if any(f"{c}(" in text for c in ("np.sum", "np.dot", *_HELPER_SOURCES)):
            self.features.add("call_in_cond")
        return node

    # -- statements --------------------------------------------------------------
    def block(self, ctx, indent, lo=1, hi=3, starts=None):
        """Lines of lo..hi statements; `starts` collects each statement's first line."""
        lines = []
        count = self._int(lo, hi) if self.n_stmts < MAX_STMTS else lo
        for _ in range(count):
            if starts is not None:
                starts.append(len(lines))
            ctx = self.stmt(ctx, indent, lines)
        if starts is not None:
            starts.append(len(lines))
        return lines

    def stmt(self, ctx, indent, lines):
        """Append one statement's lines; return the context for what follows."""
        self.n_stmts += 1
        small = self.n_stmts >= MAX_STMTS
        can_loop = not small and ctx.loop_depth < 3 and ctx.trips * 2 <= MAX_TRIPS
        can_while = (not small and self.n_whiles < 2 and ctx.loop_depth <= 1
                     and ctx.trips * 3 <= MAX_TRIPS)
        kind = self.choose([
            (6, "elem"),
            (self.w("temp"), "temp"),
            (self.w("for", can_loop), "for"),
            (2 if (not small and ctx.if_depth < 2) else 0, "if"),
            (self.w("while", can_while), "while"),
            (self.w("vector_stmt", ctx.trips <= 10), "vector"),
            (self.w("call_mut"), "call_mut"),
            (self.w("scalar_arg_overwrite"), "argover"),
        ])
        return getattr(self, "stmt_" + kind)(ctx, indent, lines)

    def stmt_elem(self, ctx, indent, lines):
        use_m = self.has_m and self._int(0, 4) == 0
        if use_m:
            arr = "M"
            target = f"M[{self.index(ctx)}, {self.col_index(ctx)}]"
            self.features.add("array2d")
        else:
            arr = self.pick(self.arrays1d)
            ix = self.index(ctx)
            target = f"{arr}[{ix}]"
            if "idx[" in ix:
                self.features.add("idx_write")
        op = self.choose([(self.w("elem_assign"), "="), (self.w("elem_iadd"), "+="),
                          (self.w("elem_isub"), "-="), (self.w("elem_imul"), "*=")])
        self.features.add({"=": "elem_assign", "+=": "elem_iadd", "-=": "elem_isub",
                           "*=": "elem_imul"}[op])
        saved, self.reads = self.reads, set()
        rhs = self.expr(ctx, self._int(1, 3))
        if not use_m and self.on("alias_rw"):
            rhs = self.pick((
                lambda: _op("{p0} * {p1}", self.elem(ctx, arr), rhs),
                lambda: _op("{0} * {p1} + {p2}", self.const(), self.elem(ctx, arr), rhs),
            ))()
        if arr in self.reads:
            self.features.add("alias_rw")
        self.reads |= saved
        self.written.add(arr)
        lines.append((indent, _op("%s %s {0}" % (target, op), rhs)))
        return ctx

    def stmt_temp(self, ctx, indent, lines):
        self.features.add("temp")
        if ctx.loop_depth:
            self.features.add("temp_in_loop")
        rhs = self.expr(ctx, self._int(1, 3))
        if len(ctx.temps) >= 2 and self.on("several_values"):
            # the second target is read by the call (its value is stored after the body)
            self.features.add("several_values")
            self.helpers.add("pair")
            t, v = self.pick([(a, b) for a in ctx.temps for b in ctx.temps if a != b])
            lines.append((indent, _call(f"{t}, {v} = pair({{0}}, {v})", rhs)))
            return ctx
        if len(ctx.temps) >= 2 and self.on("tuple_assign"):
            # every value before any store: the old t in the second value
            self.features.add("tuple_assign")
            t, v = self.pick([(a, b) for a in ctx.temps for b in ctx.temps if a != b])
            lines.append((indent, _op(f"{t}, {v} = {v}, {{0}} * {t} + {{p1}}", self.const(),
                                      rhs)))
            return ctx
        if ctx.temps and self._int(0, 2):
            t = self.pick(ctx.temps)
            form = self._int(0, 2)
            if form == 0:
                lines.append((indent, _op(f"{t} = {{0}}", rhs)))
            elif form == 1:
                lines.append((indent, _op(f"{t} {self.pick(('+=', '-='))} {{0}}", rhs)))
            else:
                self.features.add("temp_recurrence")
                lines.append((indent, _op(f"{t} = {{0}} * {t} + {{p1}}", self.const(), rhs)))
            return ctx
        self.n_locals += 1
        u = f"u{self.n_locals}"
        lines.append((indent, _op(f"{u} = {{0}}", rhs)))
        return dataclasses.replace(ctx, temps=ctx.temps + (u,))

    def stmt_argover(self, ctx, indent, lines):
        self.features.add("scalar_arg_overwrite")
        s = self.pick(self.fscalars)
        rhs = self.expr(ctx, self._int(0, 2))
        lines.append((indent, _op(f"{s} = {{0}} * {s} + {{p1}}", self.const(), rhs)))
        return ctx

    def stmt_call_mut(self, ctx, indent, lines):
        self.features.add("call_mut")
        self.helpers.add("bump")
        arr = self.pick(self.arrays1d)
        self.written.add(arr)
        rhs = self.expr(ctx, self._int(0, 2))
        lines.append((indent, _call(f"bump({arr}, {self.index(ctx)}, {{0}})", rhs)))
        return ctx

    def stmt_vector(self, ctx, indent, lines):
        self.features.add("vector_stmt")
        arrs = self.arrays1d
        a, b, c = self.pick(arrs), self.pick(arrs), self.pick(arrs)
        k1, k2 = self.pick(_CONSTS), self.pick(_CONSTS)
        forms = [
            f"{a} += {k1} * {b}",
            f"{a} -= {k1} * {b} * {c}",
            f"{a}[:] = {k1} * {a} + {k2} * np.{self.pick(('sin', 'tanh', 'cos'))}({b})",
            f"{a} += {self.pick(self.fscalars + ctx.temps)} * {b}",
        ]
        if self.on("slice_stmt"):
            self.features.add("slice_stmt")
            # The shifted operand may be the target (x[1:] += 0.5 * x[:-1]): its reads of
            # other elements than the written one read the old values, as in NumPy.
            b = self.pick(arrs)
            forms = [
                f"{a}[1:] += {k1} * {b}[:-1]",
                f"{a}[1:-1] = {a}[1:-1] + {k1} * ({b}[2:] - {b}[:-2])",
                f"{a}[:-1] -= {k1} * {b}[1:] * {c}[:-1]",
                f"{a}[::-1] = {a}[::-1] + {k1} * {b} * {c}[::-1]",
            ]
        instr = None
        if self.on("vector_where"):
            # the chosen element differentiated; both branches read arrays
            self.features.add("vector_where")
            plain = f"{a}[:] = np.where({b} > {k1}, {b} * {c}, {k2} * {a})"
            instr = f"{a}[:] = _where_gt({b}, {k1}, {b} * {c}, {k2} * {a})"
            forms = [plain]
        elif self.has_idx and self.on("vector_gather"):
            # the target may be read through the gather: its old values
            self.features.add("vector_gather")
            forms = [f"{a}[:] = {a} + {k1} * {b}[idx]", f"{a} -= {k1} * {b}[idx] * {c}"]
        elif self.on("vector_roll"):
            self.features.add("vector_roll")
            shift = self.pick((1, -1, 2))
            forms = [f"{a}[:] = {a} + {k1} * (np.roll({b}, {shift}) - {b})",
                     f"{a} -= {k1} * np.roll({b}, {shift}) * {c}"]
        elif self.on("vector_cumulative"):
            # a running sum and product; the target's own elements (read where written)
            self.features.add("vector_cumulative")
            forms = [f"{a}[:] = {a} + {k1} * np.cumsum({b} * {c})",
                     f"{a} -= {k1} * np.cumprod(1.0 + 0.1 * np.tanh({b}))",
                     f"{a}[1:] = {k2} * np.cumsum({a}[1:] * {b}[1:]) + {a}[:-1]"]
        elif self.has_m and self.on("matrix_broadcast"):
            # a 1-D array broadcast along M's rows (b[:, None]), a row of M along its columns
            # (the target's old values when M is written), np.outer, a sum along an axis of
            # a broadcast, np.diff; sums and running sums asked for again and again, which
            # lowering computes once into arrays of their own (a product of a running sum of a
            # product, a running sum and row sums read through a new axis)
            self.features.add("matrix_broadcast")
            forms = [f"{a}[:] = {a} + {k1} * np.sum(M * M[0], axis=1)",
                     f"{a}[1:] += {k1} * np.diff({b})",
                     f"{a}[:] = {a} + {k1} * (M @ np.cumsum(M.T @ {b}))",
                     f"{a} += {k1} * np.sum(M * np.cumsum({b})[:, None], axis=1)"]
            if self._int(0, 1):
                a = "M"
                forms = [f"M[:, :] = M + {k1} * {b}[:, None] * M[0]",
                         f"M += {k1} * np.outer({b}, M[1]) * {c}[:, np.newaxis]",
                         f"M[:, :] = M + {k1} * {b}[:, None] * np.sum(M * M, axis=1)[:, None]"]
        elif self.on("array_helper"):
            # calls of helpers returning arrays (the target may be an argument of the call)
            self.features.add("array_helper")
            helper = self.pick(("blend", "neighbours", "relaxed"))
            self.helpers.update(("neighbours", helper))
            call = {"blend": f"blend({b}, {c})", "neighbours": f"neighbours({b}, {k2})",
                    "relaxed": f"relaxed({a}, {b})"}[helper]
            forms = [f"{a}[:] = {a} + {k1} * {call}", f"{a} -= {k1} * {call} * {c}",
                     f"{a}[:] = {call}"]
        elif self.on("several_values"):
            # into elements of whole arrays and a float, the argument array returned into
            # another (the target may be the argument: stored in order, as Python does)
            self.features.add("several_values")
            self.helpers.add("spread")
            t = self.pick(self.fscalars + ctx.temps)
            forms = [f"{a}[:], {t}, {c}[:] = spread({b}, {t})"]
            self.written.add(c)
        if "w" in arrs and self.on("array_rebind"):
            # the local array bound to a new array (filled in place), reading its old values
            self.features.add("array_rebind")
            a, instr = "w", None
            forms = [f"w = {k1} * w + {k2} * {b}", f"w = {b} * {c} - {k1} * w"]
        self.reads.update((a, b, c))
        self.written.add(a)
        text = self.pick(forms)
        lines.append((indent, _atom(text) if instr is None else Node(text, instr=instr)))
        return ctx

    def loop_header(self, ctx, force_tri=False):
        """Return (range text, lo, hi_n, trips, tag) of a for loop over range()."""
        n = self.nname
        if self.on("len_bound"):
            self.features.add("len_bound")
            arr = self.pick([a for a in self.arrays1d if a != "w"] + (["M"] if self.has_m else []))
            n = self.pick((f"len({arr})", f"{arr}.shape[0]"))
        opts = []
        rev, step2 = self.w("reverse_loop"), self.w("step2_loop")
        if ctx.trips * MAX_LEN <= MAX_TRIPS:
            opts += [
                (3, (f"range({n})", 0, 0, MAX_LEN, None)),
                (2, (f"range(1, {n})", 1, 0, MAX_LEN, None)),
                (1, (f"range({n} - 1)", 0, 1, MAX_LEN, None)),
                (1, (f"range(1, {n} - 1)", 1, 1, MAX_LEN, None)),
                (1, (f"range(2, {n})", 2, 0, MAX_LEN, None)),
                (rev, (f"range({n} - 1, -1, -1)", 0, 0, MAX_LEN, "reverse_loop")),
                (rev / 2, (f"range({n} - 2, 0, -1)", 1, 1, MAX_LEN, "reverse_loop")),
                (step2, (f"range(0, {n}, 2)", 0, 0, MAX_LEN // 2, "step2_loop")),
                (step2 / 2, (f"range(1, {n} - 1, 2)", 1, 1, MAX_LEN // 2, "step2_loop")),
            ]
            outer = [v for v in ctx.ivars if v.hi_n is not None]
            if outer:
                v = self.pick(outer)
                opts += [
                    (self.w("triangular_loop"),
                     (f"range({v.name})", 0, v.hi_n + 1, MAX_LEN, "triangular_loop")),
                    (self.w("triangular_loop") / 2,
                     (f"range({v.name} + 1, {n})", v.lo + 1, 0, MAX_LEN, "triangular_loop")),
                ]
        if force_tri:
            opts = [(wt, o) for wt, o in opts if o[4] == "triangular_loop"]
        if not (force_tri and opts):
            k = self._int(2, 3)
            opts += [(2, (f"range({k})", 0, None, k, "const_loop"))]
        text, lo, hi_n, trips, tag = self.choose(opts)
        return text, lo, hi_n, trips, tag

    def stmt_for(self, ctx, indent, lines, force_tri=False):
        self.features.add("for")
        if ctx.loop_depth:
            self.features.add("nested_for")
        name = ("i", "j", "l", "m")[ctx.loop_depth]
        text, lo, hi_n, trips, tag = self.loop_header(ctx, force_tri)
        if tag:
            self.features.add(tag)
        if hi_n is None:  # range(k): 0 <= v <= k-1
            iv = IVar(name, 0, hi_c=trips - 1)
        else:
            iv = IVar(name, lo, hi_n=hi_n)
        lines.append((indent, _atom(f"for {name} in {text}:")))
        body_ctx = dataclasses.replace(
            ctx, ivars=ctx.ivars + (iv,), loop_depth=ctx.loop_depth + 1,
            trips=ctx.trips * trips, in_for=True, if_depth=0)
        pre = []
        if (hi_n is not None and ctx.loop_depth == 0 and body_ctx.trips * MAX_LEN <= MAX_TRIPS
                and self.on("triangular_loop", 0.15)):
            # the shape of triangular solves: an inner loop over j < i (or j > i)
            self.n_stmts += 1
            self.stmt_for(body_ctx, indent + 1, pre, force_tri=True)
        starts = []
        body = pre + self.block(body_ctx, indent + 1, starts=starts)
        if pre:
            starts = [0] + [len(pre) + p for p in starts]
        if any(self.on(jump, FEATURES[jump] / 2) for jump in ("break", "continue",
                                                              "early_return")):
            which = self.choose([(self.w("break"), "break"), (self.w("continue"), "continue"),
                                 (self.w("early_return"), "return")])
            self.features.add("early_return" if which == "return" else which)
            leave = _atom(which)
            if which == "return":       # out of every loop, past the loss at the end
                leave = Node("return {0}", (self.expr(body_ctx, 1),))
            jump = [(indent + 1, self.cond_node(body_ctx))]
            if self._int(0, 1):
                jump += self.block(dataclasses.replace(body_ctx, if_depth=2), indent + 2, 1, 1)
            if self.on("nested_jump"):
                # the jump inside an if inside the if, statements after it in the outer branch
                self.features.add("nested_jump")
                jump.append((indent + 2, self.cond_node(body_ctx)))
                jump.append((indent + 3, leave))
                if self._int(0, 1):
                    jump += self.block(dataclasses.replace(body_ctx, if_depth=2), indent + 2, 1,
                                       1)
            else:
                jump.append((indent + 2, leave))
            pos = self.pick(starts)  # between two statements of the body
            body = body[:pos] + jump + body[pos:]
        lines.extend(body)
        return ctx

    def cond_node(self, ctx):
        c = self.cond(ctx)
        return Node("if {0}:", (c,))

    def stmt_if(self, ctx, indent, lines):
        inner = dataclasses.replace(ctx, if_depth=ctx.if_depth + 1)
        lines.append((indent, self.cond_node(ctx)))
        lines.extend(self.block(inner, indent + 1, 1, 2))
        if self.on("elif"):
            self.features.add("elif")
            lines.append((indent, Node("elif {0}:", (self.cond(ctx),))))
            lines.extend(self.block(inner, indent + 1, 1, 2))
        if self.on("else"):
            self.features.add("else")
            lines.append((indent, _atom("else:")))
            lines.extend(self.block(inner, indent + 1, 1, 2))
        return ctx

    def stmt_while(self, ctx, indent, lines):
        self.features.add("while")
        if ctx.loop_depth:
            self.features.add("nested_for")
        self.n_whiles += 1
        name = ("k", "kk", "k2", "k3")[ctx.loop_depth]
        count = self._int(2, 3)
        lines.append((indent, _atom(f"{name} = 0")))
        lines.append((indent, _atom(f"while {name} < {count}:")))
        body_ctx = dataclasses.replace(
            ctx, ivars=ctx.ivars + (IVar(name, 0, hi_c=count - 1),),
            loop_depth=ctx.loop_depth + 1, trips=ctx.trips * count, in_for=False, if_depth=0)
        lines.extend(self.block(body_ctx, indent + 1))
        lines.append((indent + 1, _atom(f"{name} += 1")))
        return ctx

    # -- whole kernel --------------------------------------------------------------
    def kernel(self):
        # signature
        self.has_idx = self.on("idx")
        self.has_m = self.on("array2d")
        farrays = ["x", "y"] + (["z"] if self.on("arg_z") else [])
        fscalars = ["a"] + (["b"] if self.on("arg_b") else [])
        names = list(farrays) + (["M"] if self.has_m else []) + (["idx"] if self.has_idx else [])
        names += fscalars + ["n"]
        kinds = {**{a: "farray" for a in farrays}, "M": "farray2d", "idx": "iarray",
                 **{s: "fscalar" for s in fscalars}, "n": "int"}
        if self.on("arg_order_shuffled"):
            perm = self.draw(st.permutations(names))
            if list(perm) != names:
                self.features.add("arg_order_shuffled")
            names = list(perm)
        self.nname = "n"
        self.fscalars = tuple(fscalars)
        self.arrays1d = tuple(farrays)

        body = []
        ctx = Ctx()
        if self.on("arg_rebind"):
            # the caller's x is left as it was: every later write goes to the new array
            self.features.add("arg_rebind")
            body.append((1, _atom(f"x = {self.pick(_CONSTS)} * x + {self.pick(_CONSTS)} * y")))
        if self.on("local_array"):
            self.features.add("local_array")
            init = self.pick(("np.zeros(n)", "np.zeros_like(x)", "np.copy(y)"))
            body.append((1, _atom(f"w = {init}")))
            self.arrays1d = self.arrays1d + ("w",)
        for t in range(self._int(0, 2)):
            body.append((1, _op(f"t{t} = {{0}}", self.expr(ctx, 2))))
            ctx = dataclasses.replace(ctx, temps=ctx.temps + (f"t{t}",))
        # at least one loop at top level, then a few more statements
        self.n_stmts += 1
        ctx = self.stmt_for(ctx, 1, body)
        for _ in range(self._int(0, 3)):
            if self.n_stmts >= MAX_STMTS:
                break
            ctx = self.stmt(ctx, 1, body)

        # loss
        in_loss = [a for a in self.arrays1d if a == "y" or self._int(0, 3)]
        if self.has_m and self._int(0, 3):
            in_loss.append("M")
        if self.on("return_np"):
            self.features.add("return_np")
            terms = []
            for a in in_loss:
                k = self.pick(_LOSS_CONSTS)
                if a == "M":
                    terms.append(f"{k} * np.sum(M * M)")
                else:
                    terms.append(self.pick((f"{k} * np.dot({a}, {a})", f"{k} * np.sum({a})")))
            body.append((1, _atom("s = " + " + ".join(terms))))
        else:
            body.append((1, _atom("s = 0.0")))
            body.append((1, _atom("for i in range(n):")))
            for a in in_loss:
                k = self.pick(_LOSS_CONSTS)
                if a == "M":
                    body.append((2, _atom(f"for j in range({NCOLS}):")))
                    body.append((3, _atom(f"s += {k} * M[i, j] * M[i, j]")))
                    continue
                term = self.pick((f"{k} * {a}[i] * {a}[i]", f"{k} * {a}[i]",
                                  f"{k} * {a}[i] ** 2", f"{k} * math.sin({a}[i])"))
                body.append((2, _atom(f"s += {term}")))
        extra = []
        for _ in range(self._int(0, 2)):
            extra.append(f"{self.pick(_LOSS_CONSTS)} * {self.pick(self.fscalars + ctx.temps)}")
        if ctx.temps and self._int(0, 1):
            t = self.pick(ctx.temps)
            extra.append(f"{t} * {t}")
        body.append((1, _atom("return " + " + ".join(["s"] + extra))))

        header = f"def kernel({', '.join(names)}):"
        return names, kinds, header, body


def _render(header, body, helpers, instr):
    parts = ["import math", "import numpy as np", ""]
    if instr:
        parts += [_INSTRUMENT_PRELUDE]
    for h in sorted(helpers):
        parts += ["", _HELPER_SOURCES[h]]
    parts += ["", header]
    parts += ["    " * ind + node.render(instr) for ind, node in body]
    return "\n".join(parts) + "\n"


@dataclasses.dataclass(frozen=True)
class KernelCase:
    # the source texts are left out of repr (hypothesis prints reprs of failing
    # examples); describe() shows the plain source readably
    source: str = dataclasses.field(repr=False)
    instrumented_source: str = dataclasses.field(repr=False)
    arg_names: tuple
    arg_kinds: tuple  # "farray" | "farray2d" | "iarray" | "fscalar" | "int"
    wrt: tuple  # names, in the order gradients are returned
    wrt_spec: object  # what is passed as wrt=: names/positions, tuple or a single str
    outputs: tuple | None  # for check_grads: None (the return value) or ("return", arrays...)
    mutated: tuple  # argument arrays the kernel writes
    features: frozenset
    length: int
    seed: int
    idx_repeats: bool
    idx_dtype: str

    @property
    def wrt_positions(self):
        return [self.arg_names.index(w) for w in self.wrt]

    @property
    def digest(self):
        return hashlib.sha1(self.source.encode()).hexdigest()[:16]

    def make_args(self):
        """Fresh argument list (new arrays every call), deterministic in seed."""
        rng = np.random.default_rng(self.seed)
        L = self.length
        args = []
        for kind in self.arg_kinds:
            if kind == "farray":
                args.append(rng.uniform(-1.0, 1.0, L))
            elif kind == "farray2d":
                args.append(rng.uniform(-1.0, 1.0, (L, NCOLS)))
            elif kind == "iarray":
                vals = rng.integers(0, L, L) if self.idx_repeats else rng.permutation(L)
                args.append(np.asarray(vals, dtype=self.idx_dtype))
            elif kind == "fscalar":
                args.append(float(rng.uniform(0.3, 1.2) * rng.choice((-1.0, 1.0))))
            else:
                args.append(L)
        return args

    def describe(self):
        args = ", ".join(f"{n}:{k}" for n, k in zip(self.arg_names, self.arg_kinds))
        return (
            f"--- generated kernel (sha1 {self.digest}) ---\n{self.source}"
            f"--- args ({args}); length={self.length} seed={self.seed} "
            f"idx_repeats={self.idx_repeats} idx_dtype={self.idx_dtype}\n"
            f"--- wrt={self.wrt_spec!r} (names {self.wrt}); outputs={self.outputs!r}; "
            f"mutated={self.mutated}\n--- features: {', '.join(sorted(self.features))}"
        )


def env_disabled():
    """Feature names switched off through ADSRC_RK_DISABLE."""
    raw = os.environ.get("ADSRC_RK_DISABLE", "")
    names = {s.strip() for s in raw.split(",") if s.strip()}
    unknown = names - set(FEATURES)
    if unknown:
        raise ValueError(f"ADSRC_RK_DISABLE: unknown feature(s) {sorted(unknown)}; "
                         f"known: {sorted(FEATURES)}")
    return names


@st.composite
def kernels(draw, disable=()):
    """Hypothesis strategy of KernelCase (random kernel source + call recipe)."""
    gen = _Gen(draw, set(disable) | env_disabled())
    names, kinds, header, body = gen.kernel()
    plain = _render(header, body, gen.helpers, instr=False)
    instr = _render(header, body, gen.helpers, instr=True)
    features = set(gen.features)

    # wrt: all float arrays and float scalars, or a random non-empty subset
    cands = [a for a in names if kinds[a] in ("farray", "farray2d", "fscalar")]
    wrt = list(cands)
    if gen.on("wrt_subset"):
        keep = [c for c in cands if gen._int(0, 1)]
        wrt = keep or [gen.pick(cands)]
        if len(wrt) < len(cands):
            features.add("wrt_subset")
        wrt = list(draw(st.permutations(wrt)))
    if gen.on("wrt_positions"):
        features.add("wrt_positions")
        spec = tuple(names.index(a) for a in wrt)
    elif len(wrt) == 1 and gen.on("wrt_single_str"):
        features.add("wrt_single_str")
        spec = wrt[0]
    else:
        spec = tuple(wrt)

    mutated = tuple(a for a in names if a in gen.written)
    outputs = None
    float_mutated = [a for a in mutated if kinds[a] in ("farray", "farray2d")]
    if float_mutated and gen.on("extra_outputs"):
        features.add("extra_outputs")
        outputs = ("return", gen.pick(float_mutated))

    idx_repeats = gen.on("idx_repeats")
    idx_dtype = "int32" if gen.on("int32_idx") else "int64"
    if "idx" in names:
        features.add("idx")
        features.add("idx_repeats" if idx_repeats else "idx_permutation")
        if idx_dtype == "int32":
            features.add("int32_idx")
    return KernelCase(
        source=plain, instrumented_source=instr, arg_names=tuple(names),
        arg_kinds=tuple(kinds[a] for a in names), wrt=tuple(wrt), wrt_spec=spec,
        outputs=outputs, mutated=mutated, features=frozenset(features),
        length=draw(st.integers(MIN_LEN, MAX_LEN)), seed=draw(st.integers(0, 2**32 - 1)),
        idx_repeats=idx_repeats, idx_dtype=idx_dtype,
    )


# --------------------------------------------------------------------------
# Harness: loading, evaluation, finite differences, complex step.
# --------------------------------------------------------------------------
_MATH_CS = types.SimpleNamespace(
    sin=cmath.sin, cos=cmath.cos, tanh=cmath.tanh, exp=cmath.exp, sqrt=cmath.sqrt,
    log=cmath.log)
_NP_CS = types.SimpleNamespace(
    zeros=lambda *a, **k: np.zeros(*a, **{**k, "dtype": complex}),
    zeros_like=lambda a, **k: np.zeros_like(a, **{**k, "dtype": complex}),
    copy=lambda a: np.array(a, dtype=complex),
    sum=np.sum, dot=np.dot, power=np.power, sin=np.sin, cos=np.cos, tanh=np.tanh,
    exp=np.exp, sqrt=np.sqrt, log=np.log, mean=np.mean, roll=np.roll, outer=np.outer,
    diff=np.diff, newaxis=np.newaxis, cumsum=np.cumsum, cumprod=np.cumprod)

_LOADED: dict = {}


def load_module(source: str, directory: str, name: str) -> types.ModuleType:
    """Write ``source`` to ``directory/name.py`` and import it (inspect.getsource works)."""
    key = (name, directory)
    if key in _LOADED:
        return _LOADED[key]
    path = os.path.join(directory, name + ".py")
    with open(path, "w") as fh:
        fh.write(source)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    _LOADED[key] = mod
    return mod


@dataclasses.dataclass
class Loaded:
    plain: types.ModuleType  # kernel handed to adsrc
    instr: types.ModuleType  # instrumented, real arithmetic
    cs: types.ModuleType  # instrumented, math/np swapped for complex-capable shims


def load_case(case: KernelCase, directory: str) -> Loaded:
    base = f"rk_{case.digest}"
    plain = load_module(case.source, directory, base)
    instr = load_module(case.instrumented_source, directory, base + "_instr")
    cs = load_module(case.instrumented_source, directory, base + "_cs")
    cs.math, cs.np = _MATH_CS, _NP_CS
    return Loaded(plain, instr, cs)


def copy_args(args):
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


NUMERIC_ERRORS = (OverflowError, ZeroDivisionError, ValueError, FloatingPointError)


def run_instrumented(mod, args):
    """Run mod.kernel on copies of args: (value, margins, trace, mutated args)."""
    mod._MARGINS.clear()
    mod._TRACE.clear()
    a = copy_args(args)
    with np.errstate(all="ignore"):
        value = mod.kernel(*a)
    return value, list(mod._MARGINS), tuple(mod._TRACE), a


@dataclasses.dataclass
class Evaluation:
    ok: bool  # ran without numeric exception, finite scalar, moderate size
    reason: str
    value: float = math.nan
    min_margin: float = math.inf
    trace: tuple = ()
    final_args: list = dataclasses.field(default_factory=list)


LOSS_LIMIT = 1e4  # |loss| beyond this makes FD too noisy at h=1e-6


def evaluate(loaded: Loaded, args) -> Evaluation:
    try:
        value, margins, trace, final = run_instrumented(loaded.instr, args)
    except NUMERIC_ERRORS as e:
        return Evaluation(False, f"numeric error: {e!r}")
    if not isinstance(value, float):
        return Evaluation(False, f"return value is {type(value).__name__}, not float")
    if not math.isfinite(value) or abs(value) > LOSS_LIMIT:
        return Evaluation(False, f"loss {value!r} not finite or too large")
    if not all(np.all(np.isfinite(x)) for x in final if isinstance(x, np.ndarray)):
        return Evaluation(False, "non-finite array values")
    return Evaluation(True, "", float(value), min(margins, default=math.inf), trace, final)


def _perturbed(args, pos, flat, delta):
    a = copy_args(args)
    if isinstance(a[pos], np.ndarray):
        a[pos] = a[pos].astype(np.result_type(a[pos].dtype, type(delta)))
        a[pos].reshape(-1)[flat] += delta
    else:
        a[pos] = a[pos] + delta
    return a


def _components(args, positions):
    for p in positions:
        n = args[p].size if isinstance(args[p], np.ndarray) else 1
        for k in range(n):
            yield p, k


def _shape_like(args, positions, values):
    out, it = [], iter(values)
    for p in positions:
        if isinstance(args[p], np.ndarray):
            out.append(np.array([next(it) for _ in range(args[p].size)]).reshape(args[p].shape))
        else:
            out.append(float(next(it)))
    return out


def central_difference_grad(loaded: Loaded, args, positions, h=1e-6):
    """Full central-difference gradient of the return value (instrumented kernel).

    Returns (grads in `positions` order, branch_stable).  branch_stable is
    False if some perturbed evaluation took a different branch path than the
    unperturbed one (the FD value is then meaningless).
    """
    _, _, base_trace, _ = run_instrumented(loaded.instr, args)
    vals, stable = [], True
    for p, k in _components(args, positions):
        try:
            fp, _, tp, _ = run_instrumented(loaded.instr, _perturbed(args, p, k, h))
            fm, _, tm, _ = run_instrumented(loaded.instr, _perturbed(args, p, k, -h))
        except NUMERIC_ERRORS:
            return None, False
        stable &= (tp == base_trace) and (tm == base_trace)
        vals.append((fp - fm) / (2 * h))
    return _shape_like(args, positions, vals), stable


def complex_step_grad(loaded: Loaded, args, positions, h=1e-30):
    """Gradient by complex step through the instrumented kernel (no adsrc involved).

    None if it overflows (derivatives beyond ~1e300/h: the point is useless anyway)
    or comes out non-finite.
    """
    base = [a.astype(complex) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
            for a in args]
    vals = []
    for p, k in _components(args, positions):
        a = _perturbed(base, p, k, 1j * h)
        try:
            with np.errstate(all="ignore"):
                vals.append(complex(loaded.cs.kernel(*a)).imag / h)
        except NUMERIC_ERRORS:
            return None
    if not np.all(np.isfinite(vals)):
        return None
    return _shape_like(args, positions, vals)


def branch_stable_under(loaded: Loaded, args, positions, eps, ndirs=2, seed=0):
    """True if random simultaneous perturbations of size eps keep the branch trace."""
    _, _, base_trace, _ = run_instrumented(loaded.instr, args)
    rng = np.random.default_rng(seed)
    for _ in range(ndirs):
        for sign in (1.0, -1.0):
            a = copy_args(args)
            for p in positions:
                if isinstance(a[p], np.ndarray):
                    a[p] = a[p] + sign * eps * rng.standard_normal(a[p].shape)
                else:
                    a[p] = a[p] + sign * eps * rng.standard_normal()
            try:
                if run_instrumented(loaded.instr, a)[2] != base_trace:
                    return False
            except NUMERIC_ERRORS:
                return False
    return True


class _BranchFlip(Exception):
    pass


def check_grads_probe(loaded: Loaded, case: KernelCase, args, *, step=1e-4, ndirs=3, seed=1):
    """Would a finite-difference check with a *large* step be trustworthy at this point?

    ``adsrc.check_grads`` compares adjoints with central differences plus
    Richardson extrapolation in random directions (at step 1e-4, and half
    that, each argument's part of a direction scaled by max(1, max |arg|)).
    That step is much larger than our own h=1e-6, so a kernel can be fine for
    our FD and still make check_grads' FD wrong (branch flips, or big higher derivatives).  This
    probe runs the same kind of scheme on the instrumented kernel and compares
    it with the exact directional derivative from complex step, without adsrc.

    Returns (worst relative error, branch_stable).
    """
    outs = case.outputs or ("return",)
    positions = case.wrt_positions
    pos_of = {n: k for k, n in enumerate(case.arg_names)}
    rng = np.random.default_rng(seed)
    h = step
    _, _, base_trace, _ = run_instrumented(loaded.instr, args)

    def project(value, final, weights):
        return sum(weights[o] * value if o == "return" else np.sum(weights[o] * final[pos_of[o]])
                   for o in outs)

    worst = 0.0
    for _ in range(ndirs):
        v = {p: (rng.standard_normal(args[p].shape) if isinstance(args[p], np.ndarray)
                 else float(rng.standard_normal())) * max(1.0, float(np.max(np.abs(args[p]))))
             for p in positions}
        wts = {o: (float(rng.standard_normal()) if o == "return"
                   else rng.standard_normal(args[pos_of[o]].shape)) for o in outs}

        def along(t):
            a = copy_args(args)
            for p in positions:
                a[p] = a[p] + t * v[p]
            value, _, trace, final = run_instrumented(loaded.instr, a)
            if trace != base_trace:
                raise _BranchFlip
            return float(project(value, final, wts))

        def central(t):
            return (along(t) - along(-t)) / (2 * t)

        try:
            fd = (4.0 * central(h / 2) - central(h)) / 3.0
            magnitude = abs(along(0.0))
        except _BranchFlip:
            return math.inf, False
        except NUMERIC_ERRORS:
            return math.inf, True
        a = [x.astype(complex) if isinstance(x, np.ndarray) and x.dtype.kind == "f" else x
             for x in args]
        for p in positions:
            a[p] = a[p] + 1e-30j * v[p]
        try:
            with np.errstate(all="ignore"):
                value = loaded.cs.kernel(*a)
            exact = complex(project(value, a, wts)).imag / 1e-30
        except NUMERIC_ERRORS:
            return math.inf, True
        err = abs(fd - exact) / max(abs(fd), abs(exact), 1e-10 * max(1.0, magnitude))
        worst = max(worst, err)
    return worst, True


def compare_grads(got, want, rtol, atol, names=None):
    """Return a list of human-readable mismatches (empty when all close)."""
    problems = []
    names = names or [str(i) for i in range(len(want))]
    if len(got) != len(want):
        return [f"expected {len(want)} gradients, got {len(got)}"]
    for name, g, w in zip(names, got, want):
        g = np.asarray(g, dtype=float)
        w = np.asarray(w, dtype=float)
        if g.shape != w.shape:
            problems.append(f"{name}: shape {g.shape} != expected {w.shape}")
            continue
        tol = atol + rtol * np.maximum(np.abs(g), np.abs(w))
        bad = ~(np.abs(g - w) <= tol)
        if np.any(bad):
            for k in zip(*np.nonzero(bad)) if g.ndim else [()]:
                problems.append(f"{name}{list(k) if k else ''}: got {g[k]!r}, "
                                f"expected {w[k]!r} (|diff|={abs(g[k] - w[k]):.3g})")
    return problems


def allowed_calls():
    """Call targets generated kernels may use (for the generator's self-check)."""
    return {
        "range", "len", "abs", "math.sin", "math.cos", "math.tanh", "math.exp", "math.sqrt",
        "math.log", "np.sin", "np.cos", "np.tanh", "np.exp", "np.sqrt", "np.log", "np.power",
        "np.sum", "np.dot", "np.zeros", "np.zeros_like", "np.copy", "np.maximum", "np.minimum",
        "np.mean", "np.max", "np.min", "np.where", "np.roll", "np.outer", "np.diff",
        "np.cumsum", "np.cumprod",
        *_HELPER_SOURCES,
    }

