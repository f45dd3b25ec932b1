"""Reads of a local that may not be bound yet, checked when the generated code runs (the
fence's last step).

Python raises ``UnboundLocalError`` when a kernel reads a name that no statement has bound
yet, as after a loop that ran no trip::

    for it in range(sweeps):
        r = b - A @ x
        ...
    return np.dot(r, r)             # sweeps == 0: r is unbound

Generated code gives every local a value of its type before it runs (compiled scalars are C
variables, local arrays are allocated where the name is first bound, even inside a loop), so
the same read would take whatever memory held: a wrong value, and a zero or wrong derivative.
A definite-assignment analysis finds the reads that some path reaches with the name unbound;
for each such name, a flag set after each of its bindings, and an assert before each such read,
make the generated code stop where Python would (``AssertionError``, as for adsrc's other
checks run with the kernel, naming the user's line)::

    _bound_r = 0
    for it in range(sweeps):
        r = b - A @ x
        _bound_r = 1
        ...
    assert _bound_r == 1, "kern.py:5: 'r' is read before it is bound ..."
    return np.dot(r, r)

The analysis is conservative: a loop may run no trip, a branch may be either.  A read it
cannot prove safe costs an integer comparison; a name is bound for good once bound (the subset
has no ``del``), so one check before a statement covers every later evaluation of its
condition.  Names starting with ``_`` (but ``_`` itself) are generated, bound on every path by
construction.

A read Python makes only for some values, in the right operand of ``and``/``or`` or a branch of
``a if c else b``, cannot be checked that way: a check before the statement would stop kernels
Python runs.  Its check follows Python's evaluation instead, reading the operands that decide
whether the read is made (:func:`_checked_where_read`)::

    assert k == 0 or _bound_err == 1, "..."
    while k == 0 or err > tol:
        ...                         # binds err on some trips
        assert k == 0 or _bound_err == 1, "..."

A ``while`` test is evaluated again after each trip, so its check goes before the loop, at the
end of the body and before each ``continue``.  An operand that decides such a read and calls a
function is not evaluated a second time (a called kernel may write arrays): that read stays
unchecked.
"""

import copy

import gast

from adsrc.frontend.quoting import const, located, name, quote, quote_expr

_FLAG = "_bound_{}"


def guard(tree, source):
    """Add the flags and asserts to ``tree`` (a fenced kernel's FunctionDef), in place."""
    params = {arg.id for arg in tree.args.args}
    locals_ = {node.id for node in gast.walk(tree)
               if isinstance(node, gast.Name) and isinstance(node.ctx, gast.Store)
               and not (node.id.startswith("_") and node.id != "_") and node.id not in params}
    if not locals_:
        return
    flagged = set()

    def check(stmt, test, names):
        return gast.Assert(test=test, msg=const(
            f"{source.place(stmt)}: {' or '.join(repr(local) for local in names)} is read "
            f"before it is bound (Python raises UnboundLocalError here): no statement binding "
            f"it has run, as after a loop that ran no trip"))

    def checks(stmt, bound):
        unsafe = sorted(local for local in _own_reads(stmt) & locals_ if local not in bound)
        flagged.update(unsafe)
        out = [check(stmt, quote_expr(f"{_FLAG.format(local)} == 1"), [local])
               for local in unsafe]
        maybe = sorted((_all_reads(stmt) & locals_) - bound - set(unsafe))
        try:
            test = _conjunction([_checked_where_read(part, set(maybe))
                                 for part in _parts(stmt)])
        except _CallsAFunction:
            test = None
        if test is not None:
            flagged.update(maybe)
            out.append(check(stmt, test, maybe))
            if isinstance(stmt, gast.While):
                again = lambda: located([check(stmt, copy.deepcopy(test), maybe)], stmt)
                stmt.body = _before_continues(stmt.body, again)
                if not isinstance(stmt.body[-1], (gast.Break, gast.Continue)):
                    stmt.body.extend(again())
        return located(out, stmt)

    tree.body, _ = BoundNames(checks).block(tree.body, frozenset())
    if flagged:
        tree.body = located([gast.Assign(targets=[name(_FLAG.format(local), store=True)],
                                         value=const(0), type_comment=None)
                             for local in sorted(flagged)], tree) + tree.body
        # the flags' bindings go in now: the reads were found first, so which names need one
        # was known only at the end of the walk
        tree.body = _set_flags(tree.body, flagged)


def flags_in(tree):
    """The names of the flags ``guard`` gave ``tree``."""
    return {node.id for node in gast.walk(tree)
            if isinstance(node, gast.Name) and node.id.startswith(_FLAG.format(""))}


def only_when_bound(extent, flags):
    """``extent`` (an allocation's extent, computed ahead of the statement binding the array)
    as ``(extent if _bound_n == 1 else 0)`` when it reads names ``n`` with a flag among
    ``flags``: where the flag is 0, the statement is not reached bound (its own check stops
    it), and the extent would read a name no statement has bound."""
    tests = sorted({_FLAG.format(node.id) for node in gast.walk(extent)
                    if isinstance(node, gast.Name) and _FLAG.format(node.id) in flags})
    if not tests:
        return extent
    bound = " and ".join(f"{flag} == 1" for flag in tests)
    return quote_expr(f"(E if {bound} else 0)", E=extent)


def refuse_reads_before_bindings(body, names, fail):
    """Raise ``fail(stmt, name)`` at the first statement of ``body`` that reads one of
    ``names`` where some path reaches it before a binding of the name.  For the names whose
    bindings the fence drops (a SciPy matrix, whose uses it spells with the matrix's arrays),
    which no flag can follow: checked on the kernel as written, and for a read that Python
    makes only for some values too (``y = x if k == 0 else A @ x``), which no check can follow
    either."""
    def check(stmt, bound):
        unsafe = sorted((_all_reads(stmt) & names) - bound)
        if unsafe:
            raise fail(stmt, unsafe[0])
        return []

    BoundNames(check).block(body, frozenset())


class BoundNames:
    """The definite-assignment walk: which names are bound on every path to each statement.

    ``before(stmt, bound)`` is called for each statement some path reaches, with the names
    bound on every path to it; it returns statements to put before it.  A state is a frozenset
    of names, or None after ``break`` or ``continue`` (no path goes on; the unit of the
    meet)."""

    def __init__(self, before):
        self.before = before

    def block(self, stmts, state):
        """``(stmts with what before() gave, the state after them)``; nested bodies are
        rebuilt in place."""
        out = []
        for stmt in stmts:
            if state is not None:
                out.extend(self.before(stmt, state))
            out.append(stmt)
            state = self._statement(stmt, state)
        return out, state

    def _statement(self, stmt, state):
        if state is None:       # after a break: not reached
            return None
        if isinstance(stmt, gast.If):
            stmt.body, after_body = self.block(stmt.body, state)
            stmt.orelse, after_else = self.block(stmt.orelse, state)
            return _meet(after_body, after_else)
        if isinstance(stmt, gast.For):
            stmt.body, _ = self.block(stmt.body, state | _bound_by(stmt.target))
            return state        # the loop may run no trip
        if isinstance(stmt, gast.While):
            stmt.body, _ = self.block(stmt.body, state)
            return state
        if isinstance(stmt, (gast.Break, gast.Continue)):
            return None
        if isinstance(stmt, gast.Assign):
            return state | _bound_by(stmt.targets[0])
        if isinstance(stmt, gast.AugAssign):
            return state | _bound_by(stmt.target)
        return state


def _meet(first, second):
    if first is None:
        return second
    if second is None:
        return first
    return first & second


def _bound_by(target):
    """The names an assignment target binds (a subscript binds none: it writes an array)."""
    if isinstance(target, gast.Name):
        return frozenset([target.id])
    if isinstance(target, gast.Tuple):
        return frozenset().union(*(_bound_by(elt) for elt in target.elts))
    return frozenset()


def _parts(stmt):
    """The expressions a statement evaluates, not counting the statements nested in it: a
    subscript target reads its array and its indices."""
    if isinstance(stmt, gast.For):
        return [stmt.iter]
    if isinstance(stmt, (gast.If, gast.While)):
        return [stmt.test]
    if isinstance(stmt, gast.Assign):
        return [stmt.value] + [stmt.targets[0]] * (not isinstance(stmt.targets[0], gast.Name))
    if isinstance(stmt, gast.AugAssign):
        return [stmt.value, stmt.target]
    value = getattr(stmt, "value", None)     # Expr, Return; Break, Continue, Pass have none
    return [] if value is None else [value]


def _read(node):
    return isinstance(node, gast.Name) and not isinstance(node.ctx, gast.Store)


def _all_reads(stmt):
    """The names a statement may read, for some values or for all."""
    return {node.id for part in _parts(stmt) for node in gast.walk(part) if _read(node)}


def _own_reads(stmt):
    """The names a statement reads, whatever its values, before it binds any, not counting the
    statements nested in it: a subscript target reads its array and its indices, ``a += 1``
    reads ``a``.  The right operands of ``and``/``or`` and the branches of ``a if c else b``
    are left out: Python evaluates them only for some values (``while k == 0 or err > tol``
    reads ``err`` only after the first trip), and a check before the statement would stop
    a kernel that Python runs: :func:`_checked_where_read` checks them."""
    reads = {node.id for part in _parts(stmt) for node in _evaluated(part) if _read(node)}
    if isinstance(stmt, gast.AugAssign) and isinstance(stmt.target, gast.Name):
        reads.add(stmt.target.id)
    return reads


def _evaluated(node):
    """The nodes of an expression that Python evaluates whatever the values: ``gast.walk``
    but for the right operands of ``and``/``or`` and the branches of a conditional
    expression."""
    yield node
    if isinstance(node, gast.BoolOp):
        children = node.values[:1]
    elif isinstance(node, gast.IfExp):
        children = [node.test]
    else:
        children = gast.iter_child_nodes(node)
    for child in children:
        yield from _evaluated(child)


class _CallsAFunction(Exception):
    """An operand that decides a read calls a function: the check would call it again, and
    a kernel called in a test may write arrays (``while shrink(x) > 1.0 or err > tol``).  Such
    a read stays unchecked, as before any check followed and/or."""


def _deciding(operand):
    """A copy of ``operand`` for a check to evaluate again; :class:`_CallsAFunction`."""
    if any(isinstance(node, gast.Call) for node in gast.walk(operand)):
        raise _CallsAFunction()
    return copy.deepcopy(operand)


def _checked_where_read(node, names):
    """An expression true when every read of ``names`` that evaluating ``node`` makes is of a
    bound name, evaluated as Python evaluates ``node``: the left operands of ``and``/``or``
    and the test of ``a if c else b`` decide which reads are made (``k == 0 or _bound_err ==
    1`` for ``k == 0 or err > tol``).  None when ``node`` reads none of ``names``.  The operands
    it reads are read where Python reads them, after their own checks."""
    if _read(node):
        return quote_expr(f"{_FLAG.format(node.id)} == 1") if node.id in names else None
    if isinstance(node, gast.BoolOp):
        rest = None         # the check of the operands after the one at hand
        for operand in reversed(node.values):
            if rest is not None:        # made only when the operand does not decide
                decides = _deciding(operand)
                if isinstance(node.op, gast.And):
                    decides = gast.UnaryOp(gast.Not(), decides)
                rest = gast.BoolOp(gast.Or(), [decides, rest])
            rest = _conjunction([_checked_where_read(operand, names), rest])
        return rest
    if isinstance(node, gast.IfExp):
        body, orelse = (_checked_where_read(branch, names) for branch in (node.body, node.orelse))
        chosen = None if body is None and orelse is None else gast.IfExp(
            _deciding(node.test), body or const(True), orelse or const(True))
        return _conjunction([_checked_where_read(node.test, names), chosen])
    return _conjunction([_checked_where_read(child, names)
                         for child in gast.iter_child_nodes(node)])


def _conjunction(tests):
    tests = [test for test in tests if test is not None]
    if len(tests) > 1:
        return gast.BoolOp(gast.And(), tests)
    return tests[0] if tests else None


def _before_continues(stmts, make):
    """``stmts`` with the statements ``make()`` gives before each ``continue`` of the loop
    whose body they are (not of a nested loop)."""
    out = []
    for stmt in stmts:
        if isinstance(stmt, gast.Continue):
            out.extend(make())
        elif isinstance(stmt, gast.If):
            stmt.body = _before_continues(stmt.body, make)
            stmt.orelse = _before_continues(stmt.orelse, make)
        out.append(stmt)
    return out


def _set_flags(stmts, flagged):
    """``stmts`` with ``_bound_<name> = 1`` after each binding of a flagged name (first in the
    body of a loop whose counter it is)."""
    out = []
    for stmt in stmts:
        out.append(stmt)
        if isinstance(stmt, gast.If):
            stmt.body = _set_flags(stmt.body, flagged)
            stmt.orelse = _set_flags(stmt.orelse, flagged)
        elif isinstance(stmt, (gast.For, gast.While)):
            stmt.body = _set_flags(stmt.body, flagged)
            if isinstance(stmt, gast.For):
                stmt.body = _flags_set(_bound_by(stmt.target) & flagged, stmt) + stmt.body
        elif isinstance(stmt, gast.Assign):
            out.extend(_flags_set(_bound_by(stmt.targets[0]) & flagged, stmt))
    return out


def _flags_set(names, origin):
    return located([stmt for local in sorted(names)
                    for stmt in quote(f"{_FLAG.format(local)} = 1")], origin)
