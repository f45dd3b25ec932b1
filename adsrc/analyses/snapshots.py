"""Array snapshots: one copy of an array before a loop instead of one push per overwrite.

A Gauss-Seidel sweep overwrites every ``x[i]`` once, and the reverse sweep needs each old value
back.  Pushing the old elements one by one costs a tape write per row; copying ``x`` once before
the loop costs one ``memcpy`` of the same size.  This analysis finds the stores for which the
copy is exact, and the generated code chooses between the two at run time, by their cost.

A saved store ``A[c] = ...`` (see :mod:`adsrc.analyses.tbr`) qualifies when, in the ``for``
loop ``L`` whose counter is ``c``:

* the store is the only statement inside ``L`` that writes ``A`` (calls included), and it sits
  in ``L``'s own body, under ``if`` statements at most, never in a nested loop;
* ``A`` is a one-dimensional float array (the compiled tape's blocks hold doubles; an index array
  the kernel overwrites is pushed element by element) and nothing inside ``L`` rebinds ``c``;
* ``L`` runs over ``range(...)`` with a literal step.

Then each element of ``A`` is written at most once per run of ``L``, so the value a reverse
iteration must restore is the element's value before ``L``: the copy's element, read at the same
index.  At run time the copy is taken when ``L`` visits at least half of ``A`` and its counter
never goes negative (a negative index would wrap around to another element); otherwise the
elements are pushed as usual.  The choice is recorded on the integer tape.  A loop over
``range(A.shape[0])`` (a slice assignment ``A[:] = ...`` becomes one) always copies (``always``),
so its generated code makes no choice at all: inside a copy loop, a branch per element keeps the
C compiler from turning the loop into a vectorised copy.
"""

import gast

from adsrc.analyses.effects import target_root, walk_statements
from adsrc.frontend.quoting import int_literal, quote_expr, same


def literal_step(loop):
    """The step of ``for c in range(...)`` as an int, or None when it is not a literal."""
    args = loop.iter.args
    step = int_literal(args[2]) if len(args) == 3 else 1
    return step or None


def is_range_loop(stmt):
    return isinstance(stmt, gast.For) and isinstance(stmt.iter, gast.Call) \
        and isinstance(stmt.iter.func, gast.Name) and stmt.iter.func.id == "range"


class ArraySnapshots:
    """Results: ``by_loop`` (loop id -> the loop and the arrays copied before it, in order),
    ``by_store`` (store id -> (loop, array)) and ``always`` ((loop id, array) pairs copied
    whatever the run-time sizes)."""

    def __init__(self, tree, env, effects, saves):
        self.tree = tree
        self.env = env
        self.effects = effects
        self.saves = saves
        self.by_loop = {}
        self.by_store = {}
        self.always = set()

    def run(self):
        self._visit(self.tree.body, None)
        return self

    def _visit(self, stmts, loop):
        """``loop`` is the innermost enclosing ``for`` loop, if ``stmts`` are in its own body
        (nested only in ``if`` statements)."""
        for stmt in stmts:
            if isinstance(stmt, gast.Assign) and id(stmt) in self.saves and loop is not None:
                self._consider(stmt, loop)
            elif isinstance(stmt, gast.If):
                self._visit(stmt.body, loop)
                self._visit(stmt.orelse, loop)
            elif isinstance(stmt, (gast.For, gast.While)):
                inner = stmt if is_range_loop(stmt) and literal_step(stmt) is not None else None
                self._visit(stmt.body, inner)
                self._visit(stmt.orelse, None)

    def _consider(self, store, loop):
        target = store.targets[0]
        if not isinstance(target, gast.Subscript) or not isinstance(target.slice, gast.Name) \
                or target.slice.id != loop.target.id:
            return
        array = target_root(target)
        kind = self.env[array]
        if not kind.is_array or kind.ndim != 1 or not kind.is_float:
            return      # an index array's old values go on the tape element by element
        counter = loop.target.id
        for stmt in walk_statements(loop.body):
            written = self.effects.writes(stmt)
            if stmt is not store and array in written:
                return
            if counter in written:
                return
        self.by_store[id(store)] = (loop, array)
        self.by_loop.setdefault(id(loop), (loop, []))[1].append(array)
        if _visits_all_of(loop, array):
            self.always.add((id(loop), array))

    def always_copied(self, loop, array):
        return (id(loop), array) in self.always


def _visits_all_of(loop, array):
    """Whether ``loop`` is ``range(array.shape[0])`` or ``range(len(array))``: every element
    from 0 up, so the run-time test (at least half, no negative counter) always holds."""
    args = loop.iter.args
    return len(args) == 1 and any(same(args[0], quote_expr(form))
                                  for form in (f"{array}.shape[0]", f"len({array})"))
