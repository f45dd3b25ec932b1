"""Which array indices may be negative at run time: the compiled code wraps those, and only those.

Python counts a negative index from the end: ``x[i - 1]`` at ``i == 0`` is the last element, and
a periodic stencil is written that way.  Compiled code checks no index (Cython's ``wraparound``
is off for speed), so the backend must add ``n`` itself where an index can be negative, and
nowhere else: a wrap in every access would cost a compare in the inner loops of every kernel and
could keep the C compiler from vectorising them.

The analysis gives every integer scalar of a specialisation a *lower bound*, flow-insensitively:
the smallest value any of its assignments, in any of the specialisation's generated functions
(primal, forward and reverse sweeps share their variables), can give it.  An index whose lower
bound is below zero is wrapped.  What the bounds assume, as the compiled code does:

* an element of an integer array (``j = indices[k]``, ``range(indptr[i], indptr[i + 1])``) is a
  valid index, not negative: the arrays of a CSR matrix;
* a value popped from the tape (alone or in a frame) is one the forward sweep pushed from the
  same variable, so the pop adds nothing to what that variable's other assignments give;
* a length (``len(x)``, ``x.shape[0]``) is not negative.

An integer parameter of a kernel may be anything; ``range(a, b, s)`` gives its counter the
smaller of ``a`` and ``b + 1`` (either direction), or ``a`` for a literal step above zero and
``b + 1`` for one below; ``i - 1`` is one below ``i``; a product and ``//`` are not negative when
their operands are not, ``%`` when its divisor is not (``(i - 1) % n`` is an index).  The rest
(a subtraction of a variable, ``int(...)`` of a float) may be anything.
"""

import math

import gast

from adsrc.frontend.quoting import int_literal
from adsrc.transformations.reverse import tape_call

UNBOUNDED = -math.inf
_ROUNDS = 8         # rounds of the fixpoint before a still-falling bound is taken as unbounded


class IndexBounds:
    """Lower bounds of the integer scalars of one specialisation's generated functions.

    ``types``: name -> adsrc type of every variable of the functions (ints are not floats and
    not arrays)."""

    def __init__(self, functions, types):
        self.types = types
        self.bounds = {}
        self._not_negative = set()      # expressions (dumped) a condition shows >= 0 here
        params = {arg.id for function in functions for arg in function.args.args}
        self.bounds.update({name: UNBOUNDED for name in params if self._is_int(name)})
        definitions = [(name, value) for function in functions
                       for name, value in _definitions(function) if self._is_int(name)]
        for _ in range(_ROUNDS):
            if not self._lower(definitions):
                return
        for name, _ in definitions:         # a bound still falling: i -= 1 in a loop
            if self._falls(name, definitions):
                self.bounds[name] = UNBOUNDED

    def _is_int(self, name):
        kind = self.types.get(name)
        return kind is not None and kind.kind == "int"

    def _lower(self, definitions):
        """One round: every bound becomes the least its definitions give.  Whether any fell."""
        fell = False
        for name, value in definitions:
            bound = self._value_bound(value)
            if bound is not None and bound < self.bounds.get(name, math.inf):
                self.bounds[name] = bound
                fell = True
        return fell

    def _falls(self, name, definitions):
        return any(target == name and (bound := self._value_bound(value)) is not None
                   and bound < self.bounds[name] for target, value in definitions)

    def _value_bound(self, value):
        """The bound a definition gives: None for a tape pop (it adds nothing)."""
        if isinstance(value, (int, float)):
            return value
        if isinstance(value, _Counter):
            return self.counter(value.loop)
        if tape_call(value, "pop_int", "pop_frame"):
            return None
        return self.lower(value)

    def counter(self, loop):
        """The lower bound of a ``for`` loop's counter (over ``range``, maybe ``reversed``)."""
        iterable = loop.iter
        if isinstance(iterable, gast.Call) and _called(iterable) == "reversed":
            iterable = iterable.args[0]
            if isinstance(iterable, gast.Subscript):       # reversed(range(...)[:trips])
                iterable = iterable.value
        if not (isinstance(iterable, gast.Call) and _called(iterable) == "range"):
            return UNBOUNDED
        args = iterable.args
        if len(args) == 1:
            return 0
        start, after = self.lower(args[0]), self.lower(args[1]) + 1
        step = int_literal(args[2]) if len(args) == 3 else 1
        if step is not None and step > 0:
            return start
        if step is not None and step < 0:
            return after
        return min(start, after)

    def lower(self, node):
        """The least value the integer expression ``node`` can take (``UNBOUNDED`` if any)."""
        bound = self._least(node)
        if self._not_negative and gast.dump(node) in self._not_negative:
            return max(bound, 0)
        return bound

    def _least(self, node):
        """:meth:`lower`, before what the conditions around ``node`` show."""
        literal = int_literal(node)
        if literal is not None:
            return literal
        if isinstance(node, gast.Constant):
            return 0 if isinstance(node.value, bool) else UNBOUNDED
        if isinstance(node, gast.Name):
            return self.bounds.get(node.id, math.inf)
        if isinstance(node, gast.Subscript):
            # an element of an integer array is an index (above), x.shape[d] a length
            return 0
        if isinstance(node, gast.BinOp):
            return self._binop(node)
        if isinstance(node, gast.IfExp):
            return min(self.lower(node.body), self._lower_unless_negative(node.orelse,
                                                                         node.test))
        if isinstance(node, gast.Call):
            return self._call(node)
        return UNBOUNDED

    def _lower_unless_negative(self, node, test):
        """The lower bound of ``node``, the branch of ``a if X < 0 else b`` taken when ``X``
        is not negative (how lowering spells a slice bound known only at run time)."""
        if not (isinstance(test, gast.Compare) and len(test.ops) == 1
                and isinstance(test.ops[0], gast.Lt) and int_literal(test.comparators[0]) == 0):
            return self.lower(node)
        guarded = gast.dump(test.left)
        if guarded in self._not_negative:
            return self.lower(node)
        self._not_negative.add(guarded)
        try:
            return self.lower(node)
        finally:
            self._not_negative.discard(guarded)

    def _binop(self, node):
        left, right = self.lower(node.left), self.lower(node.right)
        if isinstance(node.op, gast.Add):
            return UNBOUNDED if UNBOUNDED in (left, right) else left + right
        if isinstance(node.op, gast.Sub):
            subtracted = int_literal(node.right)
            return left - subtracted if subtracted is not None else UNBOUNDED
        if isinstance(node.op, (gast.Mult, gast.FloorDiv)):
            return 0 if left >= 0 and right >= 0 else UNBOUNDED
        if isinstance(node.op, gast.Mod):       # x % 0 raises
            return 0 if right >= 0 else UNBOUNDED
        return UNBOUNDED

    def _call(self, node):
        name = _called(node)
        if name == "len":
            return 0
        if name in ("min", "max") and node.args:
            bounds = [self.lower(arg) for arg in node.args]
            return min(bounds) if name == "min" else max(bounds)
        if name == "abs":
            return 0
        return UNBOUNDED

    def may_be_negative(self, index):
        return self.lower(index) < 0


class _Counter:
    """The definition of a ``for`` loop's counter: the values of the loop's range."""

    def __init__(self, loop):
        self.loop = loop


def _called(call):
    func = call.func
    return func.id if isinstance(func, gast.Name) else None


def _definitions(function):
    """(name, value) for every assignment of a name in ``function``: the expression assigned, a
    ``_Counter`` for a loop counter, ``i + e`` for ``i += e``, or a bound (a number)."""
    out = []
    for node in gast.walk(function):
        if isinstance(node, gast.For) and isinstance(node.target, gast.Name):
            out.append((node.target.id, _Counter(node)))
        elif isinstance(node, gast.Assign):
            for target in node.targets:
                if isinstance(target, gast.Name):
                    out.append((target.id, node.value))
                elif isinstance(target, gast.Tuple):
                    out += [(item.id, _tuple_item(node.value))
                            for item in target.elts if isinstance(item, gast.Name)]
        elif isinstance(node, gast.AugAssign) and isinstance(node.target, gast.Name):
            out.append((node.target.id, gast.BinOp(gast.Name(node.target.id, gast.Load(), None,
                                                             None), node.op, node.value)))
    return out


def _tuple_item(value):
    """What each name of ``a, b = value`` gets: a length from ``n, m = u.shape``, the value
    pushed from it from a tape pop, anything from a called kernel's returned scalars."""
    if isinstance(value, gast.Attribute) and value.attr == "shape":
        return 0
    return value if tape_call(value, "pop_frame") else UNBOUNDED
