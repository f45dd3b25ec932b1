"""Where the reverse sweep gets each primal value it needs: available, recomputed or recorded.

For every value an adjoint statement reads (see :mod:`adsrc.analyses.needs`), and for every loop
bound and branch condition, this analysis decides how the reverse sweep will have it:

* **available**: it never changes after it is first set: arguments the kernel never writes,
  scalars assigned once at the top level (``n = x.shape[0]``), and loop counters inside their own
  loop (the reverse loop sets them);
* **recomputed**: a scalar local to one loop body (every read preceded by a write in the same
  iteration, never seen outside the loop), computed only from available values, other such
  locals and values the loop never writes, and not written again later in the body.  The reverse
  sweep re-runs the slice of the body that computes it at the start of each reverse iteration.
  This is how a Gauss-Seidel row's diagonal, and every ``j = indices[k]``, cost no tape at all,
  and how a Jacobi row sum over the previous iterate is recomputed instead of recorded;
* **recorded**: everything else; the to-be-recorded analysis then saves the old value at each
  overwrite that the reverse sweep would otherwise miss.

Loop bounds and branch conditions made of available or recomputable values are recomputed; the
others are recorded (loop bounds and branch directions on the integer tape).

A value the loop never writes (Jacobi's ``xold`` inside the row loop) is constant while the loop
runs, but an enclosing loop may overwrite it later.  A slice may read such a *frozen* value only
if it is recorded anyway: the slice's reads are then handed to the to-be-recorded analysis
(``slice_reads``), which keeps the later overwrites undone by the time the reverse sweep re-enters
the loop.  That restriction makes recomputation never record a name that would not have been
recorded without it, so it can only shrink the tape; :meth:`Recomputation.run` therefore
classifies twice, the second time with the first pass's recorded names as the frozen candidates.
"""

import gast

from adsrc.analyses.effects import names_read, rule_call, user_call
from adsrc.normalize.control import contains_break


def _values_read(node):
    return names_read(node, shapes=False)


def own_reads(stmt):
    """Values a statement reads itself, not counting the statements nested in it (reading an
    array's shape is not reading its values)."""
    if isinstance(stmt, gast.For):
        return _values_read(stmt.iter)
    if isinstance(stmt, (gast.If, gast.While, gast.Assert)):
        return _values_read(stmt.test)
    if isinstance(stmt, gast.Assign):
        reads = _values_read(stmt.value)
        target = stmt.targets[0]
        if isinstance(target, gast.Subscript):
            reads |= _values_read(target.slice) | {target.value.id}
        return reads
    if isinstance(stmt, (gast.Expr, gast.Return)):
        return _values_read(stmt) if getattr(stmt, "value", None) is not None else set()
    return set()


def control_reads(stmt):
    """The values a loop's bounds or a branch's condition read."""
    if isinstance(stmt, gast.For):
        return _values_read(stmt.iter)
    return _values_read(stmt.test)


def _can_break(stmt):
    """A loop that may stop early cannot be re-run from a pruned copy of its body."""
    return isinstance(stmt, (gast.For, gast.While)) and contains_break(stmt.body)


class Recomputation:
    """Classifies needed values; results in the attributes set by :meth:`run`.

    * ``recorded``: names the to-be-recorded analysis must keep track of;
    * ``slices``: loop node id -> names to recompute at the start of each reverse iteration;
    * ``slice_reads``: loop node id -> frozen values its slice reads, which must be as the
      forward iteration saw them when the reverse iteration starts;
    * ``recompute_control``: ids of ``for``/``if`` statements whose bounds/condition are
      recomputed (all others are recorded);
    * ``pure_counters``, ``invariant``: as described in the module docstring.
    """

    def __init__(self, tree, env, effects, needs, params):
        self.tree = tree
        self.env = env
        self.effects = effects
        self.needs = needs
        self.params = set(params)
        self._entry_reads = {}          # id(stmt) -> _reads_on_entry(stmt), computed once

    # structure ----------------------------------------------------------------------------------

    def _index(self):
        """Order, parent loops and spans of all statements."""
        self.order, self.loops_of, self.span, self.stmts = {}, {}, {}, []

        def visit(stmts, loops):
            for stmt in stmts:
                self.order[id(stmt)] = len(self.stmts)
                self.stmts.append(stmt)
                self.loops_of[id(stmt)] = loops
                start = self.order[id(stmt)]
                inner = loops + [stmt] if isinstance(stmt, (gast.For, gast.While)) else loops
                for field in ("body", "orelse"):
                    visit(getattr(stmt, field, []) or [], inner)
                self.span[id(stmt)] = (start, len(self.stmts) - 1)

        visit(self.tree.body, [])

    def _inside(self, stmt, loop):
        """Whether ``stmt`` is nested in the body of ``loop``."""
        start, end = self.span[id(loop)]
        return start < self.order[id(stmt)] <= end

    # classes of names ---------------------------------------------------------------------------

    def _occurrences(self):
        self.reads, self.writes = {}, {}
        for stmt in self.stmts:
            for name in own_reads(stmt):
                self.reads.setdefault(name, []).append(stmt)
            for name in self.effects.writes(stmt):
                self.writes.setdefault(name, []).append(stmt)

    def _invariants(self):
        top = {id(stmt) for stmt in self.tree.body}
        invariant = set()
        for name, kind in self.env.items():
            writes = self.writes.get(name, [])
            if name in self.params and not writes:
                invariant.add(name)
            elif name not in self.params and not kind.is_array and len(writes) == 1 \
                    and id(writes[0]) in top and isinstance(writes[0], gast.Assign):
                invariant.add(name)
        return invariant

    def _pure_counters(self):
        counters = set()
        for name, writes in self.writes.items():
            if writes and all(isinstance(stmt, gast.For) and stmt.target.id == name
                              for stmt in writes):
                if all(any(self._inside(use, loop) for loop in writes)
                       for use in self.reads.get(name, [])):
                    counters.add(name)
        return counters

    def _locality(self, name):
        """The innermost loop whose body holds every occurrence of ``name``, or None."""
        uses = self.reads.get(name, []) + self.writes.get(name, [])
        if not uses:
            return None
        common = None
        for stmt in uses:
            chain = self.loops_of[id(stmt)]
            common = chain if common is None else [
                a for a, b in zip(common, chain) if a is b]
        return common[-1] if common else None

    def _defined_first(self, name, loop):
        """Whether every read of ``name`` in the loop body follows a write in the same
        iteration (the variable is dead on entry to the body)."""
        def block(stmts, defined):
            for stmt in stmts:
                if name in self._reads_on_entry(stmt) and not defined:
                    return None
                if isinstance(stmt, gast.For):
                    if block(stmt.body, defined or stmt.target.id == name) is None:
                        return None
                elif isinstance(stmt, gast.While):
                    if block(stmt.body, defined) is None:
                        return None
                elif isinstance(stmt, gast.If):
                    left, right = block(stmt.body, defined), block(stmt.orelse, defined)
                    if left is None or right is None:
                        return None
                    defined = left and right
                elif name in self.effects.writes(stmt):
                    defined = True
            return defined

        return block(loop.body, False) is not None

    def _reads_on_entry(self, stmt):
        """What ``stmt`` reads before any statement nested in it runs: a loop's range or test,
        a branch's condition, a simple statement's own reads.  Kept per statement: it is asked
        once per candidate name and loop around the statement, which for a long loop body of
        many locals walked the same expressions hundreds of thousands of times
        (``benchmarks/GENERATION.md``)."""
        found = self._entry_reads.get(id(stmt))
        if found is None:
            if isinstance(stmt, gast.For):
                found = names_read(stmt.iter)
            elif isinstance(stmt, (gast.While, gast.If)):
                found = names_read(stmt.test)
            else:
                found = own_reads(stmt)
            self._entry_reads[id(stmt)] = found
        return found

    def _frozen(self, loop, trackable):
        """The ``trackable`` values no statement inside ``loop`` writes."""
        return {name for name in trackable
                if not any(self._inside(writer, loop) for writer in self.writes.get(name, []))}

    def _loop_locals(self, trackable):
        """Which scalars each loop can recompute at the start of a reverse iteration.

        A scalar local to an inner loop is local to the loops around it too (the slice of an
        outer loop re-runs the inner loop), so it is a candidate at every level where it is
        dead on entry to the body.  ``self.locality`` keeps the innermost such loop: that is
        where a use of the value is recomputed.
        """
        candidates = {}
        for name, kind in self.env.items():
            if kind.is_array or name in self.params or name in self.invariant \
                    or name in self.pure_counters:
                continue
            innermost = self._locality(name)
            if innermost is None:
                continue
            for loop in self.loops_of[id(innermost)] + [innermost]:
                if self._defined_first(name, loop):
                    candidates.setdefault(id(loop), (loop, set()))[1].add(name)
        self.local_to = {}
        self.locality = {}
        for loop_id, (loop, names) in candidates.items():
            self.local_to[loop_id] = self._recomputable(loop, names,
                                                        self._frozen(loop, trackable))
        for loop in self.stmts:
            for name in self.local_to.get(id(loop), ()):
                previous = self.locality.get(name)
                if previous is None or self._inside(loop, previous):
                    self.locality[name] = loop

    def _recomputable(self, loop, names, frozen):
        safe_base = self.invariant | self.pure_counters | frozen
        changed = True
        while changed:
            changed = False
            for name in sorted(names):
                safe = safe_base | names
                for stmt in self.writes[name]:
                    # a call's result is recorded: the reverse sweep has the callee's
                    # adjoint, not the callee, and re-running it would cost a whole call
                    # (a library call with a rule too)
                    if not isinstance(stmt, gast.Assign) or \
                            user_call(stmt, self.effects.user_functions) is not None or \
                            rule_call(stmt) is not None or \
                            self.effects.writes(stmt) != {name} or \
                            not own_reads(stmt) <= safe or \
                            not all(control_reads(outer) <= safe and not _can_break(outer)
                                    for outer in self._controls_between(stmt, loop)):
                        names = names - {name}
                        changed = True
                        break
        return names

    def _controls_between(self, stmt, loop):
        """The loops and branches inside ``loop``'s body that enclose ``stmt``."""
        return [outer for outer in self.stmts
                if isinstance(outer, (gast.For, gast.While, gast.If)) and outer is not stmt
                and self._inside(outer, loop) and self._encloses(outer, stmt)]

    def _encloses(self, outer, stmt):
        start, end = self.span[id(outer)]
        return start < self.order[id(stmt)] <= end

    # classification -----------------------------------------------------------------------------

    def _written_after(self, name, stmt, loop, post):
        """Whether ``name`` is written after ``stmt`` (as seen from a reverse iteration of
        ``loop``): later in the body, or anywhere in an inner loop that contains ``stmt``."""
        position = self.order[id(stmt)]
        for writer in self.writes.get(name, []):
            if not self._inside(writer, loop):
                continue
            where = self.order[id(writer)]
            if where > position or (where == position and not post):
                return True
            if any(self._inside(stmt, inner) and self._inside(writer, inner)
                   for inner in self.loops_of[id(stmt)] if self._inside(inner, loop)):
                return True
        return False

    def _how(self, name, stmt, post=False):
        """'available', 'recomputed' or 'recorded' for the value of ``name`` at ``stmt``."""
        if name in self.invariant:
            return "available"
        if name in self.pure_counters and any(loop.target.id == name
                                              for loop in self.loops_of[id(stmt)]
                                              if isinstance(loop, gast.For)):
            return "available"
        loop = self.locality.get(name)
        if loop is not None and self._inside(stmt, loop) \
                and not self._written_after(name, stmt, loop, post):
            return "recomputed"
        return "recorded"

    def run(self):
        self._index()
        self._occurrences()
        self.invariant = self._invariants()
        self.pure_counters = self._pure_counters()
        self._classify(trackable=set())
        if self.recorded:
            self._classify(trackable=self.recorded)
        return self

    def _classify(self, trackable):
        self._loop_locals(trackable)
        uses = {}
        for stmt in self.stmts:
            need = self.needs.get(id(stmt))
            if need is None:
                continue
            for name in need.pre:
                uses.setdefault(name, []).append(self._how(name, stmt))
            for name in need.post:
                uses.setdefault(name, []).append(self._how(name, stmt, post=True))
        self.recorded = {name for name, ways in uses.items() if "recorded" in ways}
        wanted = {name for name, ways in uses.items()
                  if "recomputed" in ways and name not in self.recorded}
        self.recompute_control = set()
        for stmt in self.stmts:
            if isinstance(stmt, (gast.For, gast.If)):
                ways = {name: self._how(name, stmt) for name in control_reads(stmt)}
                if all(way != "recorded" and name not in self.recorded
                       for name, way in ways.items()):
                    self.recompute_control.add(id(stmt))
                    wanted |= {name for name, way in ways.items() if way == "recomputed"}
        self.slices = self._close(wanted)
        self.slice_reads = self._slice_reads()
        for names in self.slice_reads.values():
            self.recorded |= names

    def _slice_statement_reads(self, name, loop):
        """What recomputing ``name`` in ``loop``'s slice reads, control around it included."""
        reads = set()
        for stmt in self.writes[name]:
            reads |= own_reads(stmt)
            for outer in self._controls_between(stmt, loop):
                reads |= control_reads(outer)
        return reads

    def _close(self, wanted):
        """Slices per loop: the wanted names, plus the locals their recomputation reads."""
        slices = {}
        for name in wanted:
            slices.setdefault(id(self.locality[name]), (self.locality[name], set()))[1].add(name)
        self.slice_loops = {loop_id: loop for loop_id, (loop, _) in slices.items()}
        for loop, names in slices.values():
            local = self.local_to[id(loop)]
            changed = True
            while changed:
                changed = False
                for name in list(names):
                    extra = (self._slice_statement_reads(name, loop) & local) - names
                    if extra:
                        names |= extra
                        changed = True
        return {loop_id: names for loop_id, (_, names) in slices.items()}

    def _slice_reads(self):
        """Per loop, the frozen values its slice reads (everything it reads that is neither
        available everywhere nor computed by the slice itself)."""
        result = {}
        for loop_id, names in self.slices.items():
            loop = self.slice_loops[loop_id]
            reads = set().union(*(self._slice_statement_reads(name, loop) for name in names))
            frozen = reads - names - self.invariant - self.pure_counters
            if frozen:
                result[loop_id] = frozen
        return result
