"""To-be-recorded analysis: which overwrites must save the old value for the reverse sweep.

A forward data-flow analysis over the structured kernel.  ``required`` is the set of recorded
variables (see :mod:`adsrc.analyses.recompute`) whose current value some already-executed
statement's adjoint will read.  A store into a required variable saves the old value (one scalar,
or the one overwritten array element, never a copy of the array); a scalar store then leaves the
set, since the new value is only needed if a later statement reads it.  Loops are iterated to a
fixed point, branches are joined by union, and a ``break`` sends its set to the loop exit.

A loop whose recomputation slice reads frozen values (see :mod:`adsrc.analyses.recompute`)
makes them required from the start of its body: the reverse sweep re-runs the slice when it
re-enters an iteration, so every later overwrite of those values must be undone by then.

A store of a loop that reads only behind itself (:mod:`adsrc.analyses.reads_behind`) saves
nothing when its array is not required on entry to the loop: no reverse iteration of the loop
reads the old value, and nothing reversed after the loop reads the array.

Decisions are collected in ``self.saves`` (ids of assignments that save the old target value) and
``self.saves_counter`` (ids of ``for`` loops that save their counter's previous value).
"""

import gast

from adsrc.analyses.effects import rule_call, target_root


class ToBeRecorded:
    def __init__(self, tree, effects, needs, recorded, required_on_entry=(), slice_reads=None,
                 reads_behind=()):
        self.tree = tree
        self.effects = effects
        self.needs = needs
        self.recorded = recorded
        self.required_on_entry = set(required_on_entry)
        self.slice_reads = slice_reads or {}
        self.reads_behind = reads_behind
        self.saves = set()
        self.saves_counter = set()
        self._breaks = []
        self._loop_entry = {}       # loop id -> union of what was required on entry to it

    def run(self):
        self._block(self.tree.body, set(self.required_on_entry))
        for store, loop, array in self.reads_behind:
            if array not in self._loop_entry.get(id(loop), {array}):
                self.saves.discard(id(store))
        return self

    def _block(self, stmts, required):
        for stmt in stmts:
            required = self._statement(stmt, required)
            if required is None:       # after a break: nothing flows on
                return None
        return required

    def _statement(self, stmt, required):
        if isinstance(stmt, (gast.Assign, gast.Expr)):
            return self._store(stmt, required)
        if isinstance(stmt, gast.For):
            counter = stmt.target.id
            if counter in required:
                self.saves_counter.add(id(stmt))
            entry = required - {counter}
            self._loop_entry.setdefault(id(stmt), set()).update(entry)
            return self._loop(stmt, entry)
        if isinstance(stmt, gast.While):
            return self._loop(stmt, set(required))
        if isinstance(stmt, gast.If):
            left = self._block(stmt.body, set(required))
            right = self._block(stmt.orelse, set(required))
            if left is None and right is None:
                return None
            return (left or set()) | (right or set())
        if isinstance(stmt, gast.Break):
            self._breaks[-1].append(set(required))
            return None
        return required

    def _loop(self, loop, entry):
        body_in = set(entry) | self.slice_reads.get(id(loop), set())
        while True:
            self._breaks.append([])
            body_out = self._block(loop.body, set(body_in))
            breaks = self._breaks.pop()
            after = set(entry) | (body_out or set())
            for state in breaks:
                after |= state
            new_in = set(entry) | (body_out or set())
            if new_in <= body_in:
                return after
            body_in |= new_in

    def _store(self, stmt, required):
        need = self.needs.get(id(stmt))
        pre = (need.pre & self.recorded) if need else set()
        post = (need.post & self.recorded) if need else set()
        required = required | pre
        if isinstance(stmt, gast.Assign):
            target = stmt.targets[0]
            root = target_root(target)
            if root in required:
                self.saves.add(id(stmt))
            if isinstance(target, gast.Name) or rule_call(stmt) is not None:
                required = required - {root}      # the whole value is overwritten
        return required | post
