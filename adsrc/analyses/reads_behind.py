"""Loops that read only behind themselves: overwrites whose old value no reverse iteration reads.

Back substitution runs ``for i in range(n - 1, -1, -1)``, reads ``x[j]`` only under
``if j > i:`` and ends each row with ``x[i] = acc / diag``.  Every ``x[j]`` it reads was written
by an *earlier* iteration (or not at all by this loop).  The reverse sweep runs the iterations
backwards, so when it reaches row ``i`` the rows written after ``i`` in the forward loop are
done, and the elements behind ``i`` still hold what the forward row ``i`` read: the old
``x[i]`` is never needed, and restoring it (or copying ``x`` before the loop) is wasted work.
The to-be-recorded analysis alone cannot see this: it tracks whole arrays, and ``x`` is read.

A store ``A[c] = ...`` in the ``for`` loop ``L`` whose counter is ``c`` is listed here when:

* ``L`` runs over ``range(...)`` with a literal step and has no ``break``; the store is the only
  statement inside ``L`` that writes ``A``, it sits in ``L``'s own body (under ``if`` statements
  at most), and nothing inside ``L`` rebinds ``c``;
* every element of ``A`` whose value the reverse sweep reads inside ``L`` (the partials of
  :mod:`adsrc.analyses.needs`) is *behind* ``c``: ``A[c - k]`` in an ascending loop or
  ``A[c + k]`` in a descending one (``k`` a positive literal), or ``A[e]`` inside ``if e < c:``
  (ascending) or ``if e > c:`` (descending) with ``e`` not written inside that ``if``.  No
  index may be negative, the store's ``c`` included (in Python, and in the compiled code,
  which wraps a negative index as Python does, ``A[-1]`` is the last element, written later
  or earlier): the loop's literal bounds must show ``c >= 0``, and so ``A[c - k]``,
  ``A[c + k]`` and ``e > c`` in range; for ``e < c``, ``e`` must be read from an integer
  array (``j = indices[k]``), whose elements are taken to be valid indices, as the compiled
  code takes them (``j = i - 1`` is -1 on the first trip: the last element);
* no user call or library call inside ``L`` reads ``A`` (their reverse reads whole arguments),
  and no recomputation slice of ``L`` or of a loop inside it reads ``A``.

The to-be-recorded analysis then drops the save when, besides, no statement executed before
``L`` needs ``A`` in the reverse sweep (``A`` is not required on entry to ``L``; inside an
enclosing loop, the previous iterations count).  The store's own result (``_r = x[i]``) is read
before the restore would have run, so it is unaffected.
"""

import gast

from adsrc.analyses.effects import is_rule_call, names_read, target_root, user_call, \
    walk_statements
from adsrc.analyses.snapshots import is_range_loop, literal_step
from adsrc.frontend.quoting import int_literal
from adsrc.normalize.control import contains_break


class ReadsBehind:
    """Results: ``stores``, a list of ``(store, loop, array)`` as described above."""

    def __init__(self, tree, env, effects, needs, slice_reads):
        self.tree = tree
        self.env = env
        self.effects = effects
        self.needs = needs
        self.slice_reads = slice_reads
        self.stores = []

    def run(self):
        for loop in walk_statements(self.tree.body):
            if is_range_loop(loop) and literal_step(loop) \
                    and not contains_break(loop.body):
                for store in _direct_stores(loop.body):
                    if self._only_behind(store, loop):
                        self.stores.append((store, loop, target_root(store.targets[0])))
        return self

    def _only_behind(self, store, loop):
        target = store.targets[0]
        counter = loop.target.id
        if not (isinstance(target, gast.Subscript) and isinstance(target.slice, gast.Name)
                and target.slice.id == counter):
            return False
        array = target_root(target)
        if not self.env[array].is_array or self.env[array].ndim != 1:
            return False
        inner = list(walk_statements(loop.body))
        for stmt in inner:
            written = self.effects.writes(stmt)
            if (stmt is not store and array in written) or counter in written:
                return False
            if isinstance(stmt, (gast.Assign, gast.Expr)) and array in names_read(stmt) \
                    and (user_call(stmt, self.effects.user_functions) is not None
                         or any(is_rule_call(node) for node in gast.walk(stmt))):
                return False
        if any(array in self.slice_reads.get(id(stmt), ())
               for stmt in [loop] + inner if isinstance(stmt, (gast.For, gast.While))):
            return False
        lowest = _lowest(loop)
        if lowest is None or lowest < 0:     # the store A[c] may wrap round to A[c + len(A)]
            return False
        ascending = literal_step(loop) > 0
        return all(self._behind(index, guards, counter, ascending, lowest)
                   for index, guards in self._element_reads(loop.body, array, []))

    def _element_reads(self, stmts, array, guards):
        """(index, enclosing ifs taken) of each element of ``array`` the reverse sweep reads."""
        for stmt in stmts:
            if isinstance(stmt, gast.If):
                yield from self._element_reads(stmt.body, array, guards + [stmt])
                yield from self._element_reads(stmt.orelse, array, guards + [None])
            elif isinstance(stmt, (gast.For, gast.While)):
                yield from self._element_reads(stmt.body, array, guards)
            elif id(stmt) in self.needs:
                for root, index in self.needs[id(stmt)].elements:
                    if root == array:
                        yield index, guards

    def _behind(self, index, guards, counter, ascending, lowest):
        """Whether ``index`` names an element the loop wrote before (or never writes), and
        is not negative; ``lowest`` (at least 0) bounds the counter from below."""
        offset = _offset_from(index, counter)
        if offset is not None:
            return (offset < 0 if ascending else offset > 0) and lowest + offset >= 0
        if not isinstance(index, gast.Name) or ascending and not self._read_from_an_index_array(
                index.id):
            return False
        for guard in guards:
            if guard is not None and _orders(guard.test, index.id, counter, ascending) \
                    and not any(index.id in self.effects.writes(stmt)
                                for stmt in walk_statements(guard.body)):
                return True
        return False

    def _read_from_an_index_array(self, name):
        """Whether every binding of the local ``name`` is an element of an integer array
        (``j = indices[k]``), taken to be a valid index."""
        bindings = [stmt for stmt in walk_statements(self.tree.body)
                    if name in self.effects.writes(stmt)]
        return bool(bindings) and name not in {arg.id for arg in self.tree.args.args} and all(
            isinstance(stmt, gast.Assign) and isinstance(stmt.value, gast.Subscript)
            and isinstance(stmt.value.value, gast.Name)
            and self.env[stmt.value.value.id].is_array
            and not self.env[stmt.value.value.id].is_float for stmt in bindings)


def _direct_stores(stmts):
    """Assignments in ``stmts``, nested in ``if`` statements at most."""
    for stmt in stmts:
        if isinstance(stmt, gast.Assign):
            yield stmt
        elif isinstance(stmt, gast.If):
            yield from _direct_stores(stmt.body)
            yield from _direct_stores(stmt.orelse)


def _lowest(loop):
    """A literal lower bound of the counter of ``for c in range(...)``, or None."""
    args = loop.iter.args
    if literal_step(loop) > 0:
        return int_literal(args[0]) if len(args) > 1 else 0
    stop = int_literal(args[1])
    return None if stop is None else stop + 1


def _offset_from(index, counter):
    """``k`` when ``index`` is ``counter + k`` or ``counter - k`` for a literal ``k``."""
    if isinstance(index, gast.BinOp) and isinstance(index.left, gast.Name) \
            and index.left.id == counter and isinstance(index.op, (gast.Add, gast.Sub)):
        k = int_literal(index.right)
        if k is not None:
            return k if isinstance(index.op, gast.Add) else -k
    return None


def _orders(test, name, counter, ascending):
    """Whether ``test`` is ``name < counter`` (ascending) or ``name > counter`` (descending),
    in either spelling."""
    if not (isinstance(test, gast.Compare) and len(test.ops) == 1
            and isinstance(test.left, gast.Name) and isinstance(test.comparators[0], gast.Name)):
        return False
    left, right, op = test.left.id, test.comparators[0].id, test.ops[0]
    less = (left, right) == (name, counter) and isinstance(op, gast.Lt) \
        or (left, right) == (counter, name) and isinstance(op, gast.Gt)
    greater = (left, right) == (name, counter) and isinstance(op, gast.Gt) \
        or (left, right) == (counter, name) and isinstance(op, gast.Lt)
    return less if ascending else greater
