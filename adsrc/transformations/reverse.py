"""Reverse mode: the forward sweep and the reverse sweep of one analysed kernel.

The kernel becomes two functions sharing a tape:

* ``<name>__fwd(args..., _tape)`` runs the primal and saves what the to-be-recorded analysis asked
  for: the old value at an overwrite, a loop's bounds or trip count, a branch's direction; at the
  end it saves the locals the reverse sweep reads (its *frame*).  Where the snapshot analysis
  allows it (:mod:`adsrc.analyses.snapshots`), a loop copies an array once instead of pushing
  its old elements, if at run time that is the cheaper of the two (always, for a loop over the
  whole array; the reverse sweep then reads the copy in place when it can);
* ``<name>__rev(args..., <array>_bar..., [_ret_bar], _tape)`` walks the kernel backwards.  For each
  assignment it reads the target's adjoint into ``_g``, restores the old value if one was saved,
  and adds ``_g * partial`` to the adjoint of every active leaf.  At the start of each reverse
  iteration it re-runs the recomputation slice of the loop body.  It returns the adjoints of the
  scalar arguments.

Each reverse block starts with a comment naming the primal line it comes from.
"""

import copy

import gast

from adsrc.analyses.effects import names_read, rule_call, target_root, user_call
from adsrc.analyses.needs import RESULT
from adsrc.analyses.snapshots import literal_step
from adsrc.frontend.quoting import (comment, const, has_code, int_literal, name, quote,
                                    quote_expr, same, with_quoted_lines)
from adsrc.normalize.control import contains_break
from adsrc.rules import elementary
from adsrc.rules.library import RULES
from adsrc.transformations import rule_calls

TAPE = "_tape"
SEED = "_g"


def tape_call(node, *methods):
    """Whether ``node`` calls one of the tape's ``methods`` (``_tape.pop_float()``...): the
    statements every later transformation and backend translates by name."""
    return isinstance(node, gast.Call) and isinstance(node.func, gast.Attribute) \
        and isinstance(node.func.value, gast.Name) and node.func.value.id == TAPE \
        and node.func.attr in methods


def bar(node):
    """The adjoint of a name or of an array element."""
    if isinstance(node, gast.Name):
        return name(node.id + "_bar")
    return gast.Subscript(name(node.value.id + "_bar"), copy.deepcopy(node.slice), gast.Load())


class ReverseMode:
    """Generates ``__fwd`` and ``__rev`` for one specialisation (see adsrc.pipeline)."""

    def __init__(self, spec):
        self.spec = spec
        self.source = spec.source
        self.env = spec.env
        self.active = spec.active
        self.recompute = spec.recompute
        self.tbr = spec.tbr
        self.snapshots = spec.snapshots
        self.namer = spec.namer
        self.loop_temps = {}
        self.snapshot_names = {}

    # helpers ------------------------------------------------------------------------------------

    def _tape_kind(self, target):
        kind = self.env[target_root(target)]
        if kind.is_array:
            kind = kind.element
        return "float" if kind.is_float else "int"

    def _push(self, value, kind):
        return quote(f"{TAPE}.push_{kind}(V)", V=value)[0]

    def _pop(self, target, kind):
        return quote(f"T = {TAPE}.pop_{kind}()", T=target)[0]

    def _is_active_leaf(self, leaf):
        return target_root(leaf) in self.active

    def _fail(self, node, message):
        raise self.source.error(node, message)

    def _temps(self, loop):
        """Names of the generated temporaries of one loop (bounds, trip count)."""
        if id(loop) not in self.loop_temps:
            args = loop.iter.args if isinstance(loop, gast.For) else []
            self.loop_temps[id(loop)] = {
                "bounds": [self.namer.fresh("bound") for _ in args],
                "trips": self.namer.fresh("trips"),
            }
        return self.loop_temps[id(loop)]

    def _snapshot(self, loop, array):
        """Names of the run-time choice (copy or pushes) and of the copy, per loop and array."""
        key = (id(loop), array)
        if key not in self.snapshot_names:
            self.snapshot_names[key] = (self.namer.fresh("keep"), self.namer.fresh("saved"))
        return self.snapshot_names[key]

    def _snapshotted(self, loop):
        """The arrays that may be copied before ``loop``."""
        return self.snapshots.by_loop.get(id(loop), (None, []))[1]

    def _snapshot_of(self, store):
        """(choice, copy) names when ``store`` may restore from an array copy, else None; the
        choice is None when the copy is always taken."""
        found = self.snapshots.by_store.get(id(store))
        if not found:
            return None
        keep, saved = self._snapshot(*found)
        return (None if self.snapshots.always_copied(*found) else keep), saved

    def _take_snapshots(self, loop, args):
        """Before ``loop`` (running over ``range(*args)``): copy each array if the loop visits
        at least half of it with a counter that never goes negative; otherwise its elements
        are pushed one by one.  (Only loops of a literal step copy arrays: see
        :class:`adsrc.analyses.snapshots.ArraySnapshots`.)"""
        out = []
        if not self._snapshotted(loop):
            return out
        start, stop = (const(0), args[0]) if len(args) == 1 else (args[0], args[1])
        step = literal_step(loop)
        # the counter runs from ``first`` towards ``last``; its lowest value is ``lowest``
        # (plus one for a negative step, where ``stop`` is never reached)
        if step > 0:
            first, last, lowest, floor = start, stop, start, 0
        else:
            first, last, lowest, floor = stop, start, stop, -1
        tests = []
        known_lowest, known_first = int_literal(lowest), int_literal(first)
        if known_lowest is None or known_lowest < floor:
            tests.append(f"L >= {floor}")
        if known_first is None:
            span = "(B - A)"
        else:
            span = "B" if known_first == 0 else f"(B {'-' if known_first > 0 else '+'} " \
                f"{abs(known_first)})"
        scale = "" if abs(step) == 1 else f"{abs(step)} * "
        tests.append(f"2 * {span} >= {scale}X.shape[0]")
        for array in self._snapshotted(loop):
            keep, saved = self._snapshot(loop, array)
            if self.snapshots.always_copied(loop, array):
                out += quote(f"S = {TAPE}.push_block(X)", S=name(saved, store=True),
                             X=name(array))
                continue
            out += quote("K = " + " and ".join(tests), K=name(keep, store=True),
                         L=copy.deepcopy(lowest), A=copy.deepcopy(first), B=copy.deepcopy(last),
                         X=name(array))
            # the copy's position (-1: none), for the reverse sweep: copies taken inside the
            # loop sit above this one on the tape while the reverse sweep runs the loop
            out += quote(f"S = -1\nif K:\n    S = {TAPE}.push_block(X)", K=name(keep),
                         S=name(saved, store=True), X=name(array))
        return out

    def _records_bounds(self, loop):
        return isinstance(loop, gast.For) and id(loop) not in self.recompute.recompute_control

    def _counts_trips(self, loop):
        return isinstance(loop, gast.While) or contains_break(loop.body)

    # forward sweep ------------------------------------------------------------------------------

    def forward(self, stmts):
        return with_quoted_lines((self.source.quoted_line(stmt),
                                  self._forward_statement(stmt)) for stmt in stmts)

    def _forward_statement(self, stmt):
        if rule_call(stmt) is not None:
            # the old value, when saved: a float here, an array by rule_calls
            keep = id(stmt) in self.tbr.saves
            if keep and rule_calls.stored_array(stmt) is None:
                push = self._push(copy.deepcopy(stmt.targets[0]), "float")
                return [push] + rule_calls.forward(self.spec, stmt, TAPE, keep_array=False)
            return rule_calls.forward(self.spec, stmt, TAPE, keep_array=keep)
        if isinstance(stmt, (gast.Assign, gast.Expr)):
            out = []
            snapshot = self._snapshot_of(stmt)
            if id(stmt) in self.tbr.saves and (snapshot is None or snapshot[0] is not None):
                target = stmt.targets[0]    # (nothing to push when the loop always copies)
                push = self._push(copy.deepcopy(target), self._tape_kind(target))
                if snapshot is not None:        # pushed only when the array was not copied
                    push = gast.If(test=gast.UnaryOp(gast.Not(), name(snapshot[0])),
                                   body=[push], orelse=[])
                out.append(push)
            original = stmt
            stmt = copy.deepcopy(stmt)
            call = user_call(stmt, self.spec.user_functions)
            if call is not None:
                callee = self.spec.callee(original)
                call.func = name(callee.fwd_name)
                call.args.append(name(TAPE))
            out.append(stmt)
            return out
        if isinstance(stmt, gast.For):
            return self._forward_for(stmt)
        if isinstance(stmt, gast.While):
            trips = self._temps(stmt)["trips"]
            loop = gast.While(test=copy.deepcopy(stmt.test),
                              body=quote(f"{trips} = {trips} + 1") + self.forward(stmt.body),
                              orelse=[])
            return quote(f"{trips} = 0") + [loop] + [self._push(name(trips), "int")]
        if isinstance(stmt, gast.If):
            body, orelse = self.forward(stmt.body), self.forward(stmt.orelse)
            if id(stmt) not in self.recompute.recompute_control:
                body = self._before_break(body, self._push(const(1), "int"))
                orelse = self._before_break(orelse, self._push(const(0), "int"))
            return [gast.If(test=copy.deepcopy(stmt.test), body=body or [gast.Pass()],
                            orelse=orelse)]
        if isinstance(stmt, gast.Return):
            return []
        return [copy.deepcopy(stmt)]

    @classmethod
    def _before_break(cls, stmts, push):
        """A branch of the forward sweep with ``push``, the record of which branch ran, at each
        way out of it: at its end and before every ``break`` in it, also one inside an ``if``
        within the branch (after that ``if``'s own record, which the reverse sweep pops after
        this one).  A record missing on a path that breaks left the tape one short for the
        rest of the reverse sweep."""
        out = cls._before_nested_breaks(stmts, push)
        if not (stmts and isinstance(stmts[-1], gast.Break)):
            out.append(push)
        return out

    @classmethod
    def _before_nested_breaks(cls, stmts, push):
        """``stmts`` with a copy of ``push`` before each ``break`` in them or in their ``if``s
        (not in loops: a loop's break leaves that loop)."""
        out = []
        for stmt in stmts:
            if isinstance(stmt, gast.Break):
                out.append(copy.deepcopy(push))
            elif isinstance(stmt, gast.If):
                stmt.body = cls._before_nested_breaks(stmt.body, push)
                stmt.orelse = cls._before_nested_breaks(stmt.orelse, push)
            out.append(stmt)
        return out

    def _forward_for(self, stmt):
        out = []
        counter = stmt.target.id
        if id(stmt) in self.tbr.saves_counter:
            out.append(self._push(name(counter), "int"))
        loop = copy.deepcopy(stmt)
        loop.body = self.forward(stmt.body)
        after = []
        temps = self._temps(stmt)
        if self._records_bounds(stmt):
            for temp, arg in zip(temps["bounds"], stmt.iter.args):
                out += quote("T = A", T=temp, A=arg)
            loop.iter.args = [name(temp) for temp in temps["bounds"]]
            after += [self._push(name(temp), "int") for temp in temps["bounds"]]
        if self._counts_trips(stmt):
            trips = temps["trips"]
            out += quote(f"{trips} = 0")
            loop.body = quote(f"{trips} = {trips} + 1") + loop.body
            after.append(self._push(name(trips), "int"))
        out += self._take_snapshots(stmt, loop.iter.args)
        for array in self._snapshotted(stmt):     # the copies' positions, popped first
            after.append(self._push(name(self._snapshot(stmt, array)[1]), "int"))
        return out + [loop] + after

    # reverse sweep ------------------------------------------------------------------------------

    def reverse(self, stmts):
        out = []
        for stmt in reversed(stmts):
            block = self._reverse_statement(stmt)
            if block and not isinstance(stmt, (gast.For, gast.While, gast.If)):
                block = [comment(self.source.quoted_line(stmt))] + block
            out.extend(block)
        return out

    def _reverse_statement(self, stmt):
        if rule_call(stmt) is not None:
            keep = id(stmt) in self.tbr.saves
            if keep and rule_calls.stored_array(stmt) is None:
                return rule_calls.reverse(self.spec, stmt, TAPE, self.namer,
                                          restore_array=False) + [self._restore(stmt)]
            return rule_calls.reverse(self.spec, stmt, TAPE, self.namer, restore_array=keep)
        if isinstance(stmt, (gast.Assign, gast.Expr)):
            if user_call(stmt, self.spec.user_functions) is not None:
                return self._reverse_call(stmt)
            if isinstance(stmt, gast.Assign):
                return self._reverse_assign(stmt)
            return []
        if isinstance(stmt, gast.For):
            return self._reverse_for(stmt)
        if isinstance(stmt, gast.While):
            temps = self._temps(stmt)
            counter = self.namer.fresh("w")
            body = self._loop_body(stmt)
            loop = gast.For(target=name(counter, store=True),
                            iter=quote_expr(f"range({temps['trips']})"),
                            body=body or [gast.Pass()], orelse=[], type_comment=None)
            return [comment(self.source.quoted_line(stmt))] \
                + quote(f"{temps['trips']} = {TAPE}.pop_int()") + [loop]
        if isinstance(stmt, gast.If):
            body, orelse = self.reverse(stmt.body), self.reverse(stmt.orelse)
            if id(stmt) in self.recompute.recompute_control:
                if not body and not orelse:
                    return []
                test = copy.deepcopy(stmt.test)
            else:
                test = quote_expr(f"{TAPE}.pop_int()")
                if not body and not orelse:
                    return [comment(self.source.quoted_line(stmt)), gast.Expr(value=test)]
            return [comment(self.source.quoted_line(stmt)),
                    gast.If(test=test, body=body or [gast.Pass()], orelse=orelse)]
        return []

    def _reverse_assign(self, stmt):
        target, value = stmt.targets[0], stmt.value
        root = target_root(target)
        saved = id(stmt) in self.tbr.saves
        if self.env[root].is_array and isinstance(target, gast.Name):
            return []    # allocation of a local array: nothing to undo
        if root not in self.active:
            return [self._restore(stmt)] if saved else []
        increment = isinstance(value, gast.BinOp) and isinstance(value.op, (gast.Add, gast.Sub)) \
            and same(value.left, target)
        uses_result = elementary.uses_result(value, self._is_active_leaf, self._fail)
        found = [partial for partial in elementary.partials(
            value, self._is_active_leaf, self._fail, name(RESULT) if uses_result else None)
            if not (increment and partial.leaf is value.left)]
        out = quote(f"{SEED} = B", B=bar(target)) if found else []
        if not increment:
            out += quote("B = 0.0", B=bar(target))
        if uses_result:
            out += quote(f"{RESULT} = T", T=target)
        if saved:
            out.append(self._restore(stmt))
        return out + _under_shared_guards([self._accumulate(*partial) for partial in found])

    def _restore(self, store):
        """Put back the value a saved store overwrote: from the tape, or from the array's
        copy when the loop took one."""
        target = store.targets[0]
        pop = self._pop(copy.deepcopy(target), self._tape_kind(target))
        snapshot = self._snapshot_of(store)
        if snapshot is None:
            return pop
        keep, saved = snapshot
        from_copy = quote(f"T = {TAPE}.saved(S, I)", T=copy.deepcopy(target), S=saved,
                          I=copy.deepcopy(target.slice))
        if keep is None:
            return from_copy[0]
        return gast.If(test=name(keep), body=from_copy, orelse=[pop])

    def _accumulate(self, leaf, partial, guard):
        """``leaf_bar += _g * partial`` (``-=`` for a negated partial), under ``if guard:``
        where the statement reads the leaf only then."""
        op = gast.Add()
        if isinstance(partial, gast.UnaryOp) and isinstance(partial.op, gast.USub):
            partial, op = partial.operand, gast.Sub()
            if isinstance(partial, gast.Constant) and partial.value == 1.0:
                partial = None
        increment = name(SEED) if partial is None else gast.BinOp(name(SEED), gast.Mult(),
                                                                   partial)
        target = bar(leaf)
        target.ctx = gast.Store()
        update = gast.AugAssign(target=target, op=op, value=increment)
        if guard is None:
            return update
        return gast.If(test=copy.deepcopy(guard), body=[update], orelse=[])

    def _reverse_call(self, stmt):
        call = user_call(stmt, self.spec.user_functions)
        callee = self.spec.callee(stmt)
        out = []
        seed = []
        if isinstance(stmt, gast.Assign):
            target = stmt.targets[0]
            if target.id in self.active:
                out += quote(f"{SEED} = B", B=bar(target)) + quote("B = 0.0", B=bar(target))
                seed = [name(SEED)]
            if id(stmt) in self.tbr.saves:
                out.append(self._pop(copy.deepcopy(target), self._tape_kind(target)))
        if callee.returns and not seed:
            seed = [const(0.0)]
        args = [copy.deepcopy(arg) for arg in call.args]
        params = callee.params
        bars = [name(call.args[params.index(param)].id + "_bar") for param in callee.bar_params]
        rev_call = gast.Call(func=name(callee.rev_name), args=args + bars + seed + [name(TAPE)],
                             keywords=[])
        scalar_args = [call.args[params.index(param)] for param in callee.scalar_bar_params]
        receivers = [self.namer.fresh("s") for _ in scalar_args]
        if receivers:
            targets = gast.Tuple([name(r, store=True) for r in receivers], gast.Store())
            out.append(gast.Assign(targets=[targets], value=rev_call, type_comment=None))
        else:
            out.append(gast.Expr(value=rev_call))
        for receiver, arg in zip(receivers, scalar_args):
            if isinstance(arg, gast.Name) and arg.id in self.active:
                out += quote("B += R", B=bar(arg), R=receiver)
        return out

    def _reverse_for(self, stmt):
        temps = self._temps(stmt)
        out = [comment(self.source.quoted_line(stmt))]
        for array in reversed(self._snapshotted(stmt)):
            keep, saved = self._snapshot(stmt, array)
            out += quote(f"S = {TAPE}.pop_int()", S=saved)
            if not self.snapshots.always_copied(stmt, array):
                out += quote("K = S >= 0", K=keep, S=saved)
        if self._counts_trips(stmt):
            out += quote(f"{temps['trips']} = {TAPE}.pop_int()")
        if self._records_bounds(stmt):
            for temp in reversed(temps["bounds"]):
                out += quote(f"T = {TAPE}.pop_int()", T=temp)
            args = [name(temp) for temp in temps["bounds"]]
        else:
            args = [copy.deepcopy(arg) for arg in stmt.iter.args]
        iterable = gast.Call(func=name("range"), args=args, keywords=[])
        if self._counts_trips(stmt):
            iterable = gast.Subscript(iterable, gast.Slice(None, name(temps["trips"]), None),
                                      gast.Load())
        body = self._loop_body(stmt)
        rebound = [array for array in self._snapshotted(stmt)
                   if self._reads_copy_in_place(stmt, array, body)]
        for array in rebound:
            body = _without_restores(body, self._snapshot(stmt, array)[1])
        if has_code(body) or not rebound:      # a loop that only restored: gone with them
            loop = gast.For(target=name(stmt.target.id, store=True),
                            iter=gast.Call(func=name("reversed"), args=[iterable], keywords=[]),
                            body=body or [gast.Pass()], orelse=[], type_comment=None)
            out.append(loop)
        # the copies are on top again: drop them, the last pushed first (the Python tape
        # drops its last block, and a copy read in place must still be there)
        for array in reversed(self._snapshotted(stmt)):
            keep, saved = self._snapshot(stmt, array)
            drop = quote(f"{TAPE}.drop_block(X)", X=array)
            if array in rebound:
                drop = quote(f"X = {TAPE}.block(S)", X=name(array, store=True), S=saved) + drop
            always = self.snapshots.always_copied(stmt, array)
            out += drop if always else [gast.If(test=name(keep), body=drop, orelse=[])]
        if id(stmt) in self.tbr.saves_counter:
            out.append(self._pop(name(stmt.target.id), "int"))
        return out

    def _reads_copy_in_place(self, loop, array, body):
        """Whether the reverse sweep, instead of copying the old values of ``array`` back from
        its copy element by element, can make the name ``array`` refer to the copy itself once
        the reverse loop is done (when the copy was taken): the reverse loop ``body`` reads no
        element of it, so no reverse iteration needs an element another one restores, and the
        array is not a parameter of a called kernel, which must restore its caller's arrays in
        place (arrays have one name each, so nothing else sees the old storage; the entry
        kernel's reverse sweep leaves its arrays in an intermediate state anyway).  Weighted
        Jacobi's ``xold[:] = x`` then costs the reverse sweep no copy back."""
        if array in self.spec.params and self.spec.key.restore:
            return False
        return not any(_reads_elements(stmt, array) for stmt in body)

    def _loop_body(self, loop):
        """The reverse of one iteration: the recomputation slice, then the adjoint statements."""
        body = self.reverse(loop.body)
        names = self.recompute.slices.get(id(loop))
        if names and has_code(body):
            body = [comment("recompute " + ", ".join(sorted(names)))] \
                + _slice(loop.body, names) + body
        return body


def _reads_elements(stmt, array):
    """Whether ``stmt`` may read elements of ``array``: any use of its name but as the array
    written by an element assignment (``array[i] = ...``; not ``array[i] += ...``, which reads
    it), its length (``len(array)``) or its shape (``array.shape``).  A call taking the array
    (a called kernel's reverse sweep, ``xsum__rev(x, ...)``) reads its elements as much as
    ``array[j]`` does."""
    harmless = set()
    for node in gast.walk(stmt):
        if isinstance(node, gast.Assign):
            harmless.update(id(target.value) for target in node.targets
                            if isinstance(target, gast.Subscript))
        elif isinstance(node, gast.Attribute) and node.attr == "shape":
            harmless.add(id(node.value))
        elif isinstance(node, gast.Call) and isinstance(node.func, gast.Name) \
                and node.func.id == "len":
            harmless.update(id(arg) for arg in node.args)
    return any(isinstance(node, gast.Name) and node.id == array and id(node) not in harmless
               for node in gast.walk(stmt))


def _without_restores(stmts, saved):
    """``stmts`` without the statements restoring elements from the copy named ``saved``
    (``a[i] = _tape.saved(saved, i)``), at any depth; where the copy was a run-time choice
    (``if keep: <restore> else: a[i] = _tape.pop_float()``), the pop is left under
    ``if not keep``."""
    out = []
    for stmt in stmts:
        value = getattr(stmt, "value", None)
        if isinstance(stmt, gast.Assign) and tape_call(value, "saved") \
                and value.args[0].id == saved:
            continue
        stmt = copy.copy(stmt)
        for field in ("body", "orelse"):
            if getattr(stmt, field, None):
                setattr(stmt, field, _without_restores(getattr(stmt, field), saved))
        if isinstance(stmt, gast.If) and not has_code(stmt.body):
            if isinstance(stmt.test, gast.Name) and has_code(stmt.orelse):
                stmt = gast.If(test=gast.UnaryOp(gast.Not(), stmt.test), body=stmt.orelse,
                               orelse=[])
            else:                               # its test may pop the tape: it stays
                stmt.body = stmt.body + [gast.Pass()]
        out.append(stmt)
    return out


def _written_back(stmts, arrays):
    """The ``arrays`` (parameters the kernel writes) whose elements a reverse sweep writes
    back: restored from the tape or a copy, or passed to a called kernel's reverse sweep or to
    a derivative rule (``_rules.restore``), which may.  Rebinding a name to a copy writes
    nothing.  The others end the reverse sweep as the forward sweep left them, so an adjoint
    call need not copy their final values aside (8 MB a call for weighted Jacobi on a
    1024x1024 grid)."""
    written = set()
    for node in (node for stmt in stmts for node in gast.walk(stmt)):
        if isinstance(node, gast.Subscript) and isinstance(node.ctx, gast.Store) \
                and isinstance(node.value, gast.Name):
            written.add(node.value.id)
        elif isinstance(node, gast.Call) and _may_write_arguments(node):
            written |= {arg.id for arg in node.args if isinstance(arg, gast.Name)}
    return [array for array in arrays if array in written]


def _may_write_arguments(call):
    """A called kernel's reverse sweep (``<name>__rev(...)``), or a derivative rule's call."""
    func = call.func
    if isinstance(func, gast.Name):
        return func.id.endswith("__rev")
    while isinstance(func, gast.Attribute):
        func = func.value
    return isinstance(func, gast.Name) and func.id == RULES


def _slice(stmts, names):
    """The statements of a loop body that compute ``names``, with the control around them."""
    out = []
    for stmt in stmts:
        if isinstance(stmt, gast.Assign) and isinstance(stmt.targets[0], gast.Name) \
                and stmt.targets[0].id in names:
            out.append(copy.deepcopy(stmt))
        elif isinstance(stmt, (gast.For, gast.While)):
            body = _slice(stmt.body, names)
            if body:
                loop = copy.copy(stmt)
                loop.body = body
                out.append(copy.deepcopy(loop))
        elif isinstance(stmt, gast.If):
            body, orelse = _slice(stmt.body, names), _slice(stmt.orelse, names)
            if body or orelse:
                out.append(gast.If(test=copy.deepcopy(stmt.test), body=body or [gast.Pass()],
                                   orelse=orelse))
    return out



def _zero(kind):
    return const(0.0 if kind.is_float else 0)


def build_functions(spec):
    """The ``__fwd`` and ``__rev`` function definitions of a specialisation."""
    mode = ReverseMode(spec)
    forward = mode.forward(spec.tree.body)
    reverse = mode.reverse(spec.tree.body)
    inits = []
    for local in sorted(spec.active - set(spec.params) - {spec.RETURN}):
        kind = spec.env[local]
        if kind.is_array:
            inits += quote(f"{local}_bar = np.zeros_like({local})")
        else:
            inits += quote(f"{local}_bar = 0.0")
    for param in spec.scalar_bar_params:
        inits += quote(f"{param}_bar = 0.0")
    reverse = inits + reverse
    spec.restored_arrays = _written_back(reverse, spec.written_arrays)

    locals_read = set()
    for stmt in reverse:
        locals_read |= names_read(stmt)
    recomputed = set().union(*spec.recompute.slices.values()) if spec.recompute.slices else set()
    # Arguments the kernel never rebinds (array arguments never are) arrive unchanged in the
    # reverse sweep; everything else it reads is saved at the end of the forward sweep.
    unchanged_params = {param for param in spec.params
                        if spec.env[param].is_array or param in spec.recompute.invariant}
    frame = sorted((locals_read & set(spec.env)) - unchanged_params
                   - spec.recompute.pure_counters - recomputed)
    # Locals the forward sweep saves before their first assignment (a trip's value, pushed on
    # the first trip too) or saves in its frame: bound first, to zero (never read as zero).
    pushed = {node.args[0].id for stmt in forward for node in gast.walk(stmt)
              if tape_call(node, "push_float", "push_int") and isinstance(node.args[0], gast.Name)
              and node.args[0].id in spec.env}
    unbound = [local for local in sorted(set(frame) | pushed)
               if local not in spec.recompute.invariant and local not in spec.params
               and not spec.env[local].is_array]
    forward = [stmt for local in unbound for stmt in quote("V = Z", V=local,
                                                         Z=_zero(spec.env[local]))] + forward
    if frame:
        values = gast.Tuple([name(local) for local in frame], gast.Load())
        forward += quote(f"{TAPE}.push_frame(F)", F=values)
        unpack = gast.Tuple([name(local, store=True) for local in frame], gast.Store())
        reverse = [gast.Assign(targets=[unpack], value=quote_expr(f"{TAPE}.pop_frame()"),
                               type_comment=None)] + reverse
    if spec.returns:
        forward += quote(f"return {spec.RETURN}")
    if spec.scalar_bar_params:
        values = gast.Tuple([name(param + "_bar") for param in spec.scalar_bar_params],
                            gast.Load())
        reverse.append(gast.Return(value=values))

    params = list(spec.params)
    fwd_args = params + [TAPE]
    rev_args = params + [param + "_bar" for param in spec.bar_params] \
        + ([spec.RETURN + "_bar"] if spec.returns else []) + [TAPE]
    return _function(spec.fwd_name, fwd_args, forward), _function(spec.rev_name, rev_args,
                                                                   reverse)


def _function(function_name, args, body):
    arguments = gast.arguments(args=[name(arg, store=False) for arg in args], posonlyargs=[],
                               vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None,
                               defaults=[])
    for arg in arguments.args:
        arg.ctx = gast.Param()
    return gast.FunctionDef(name=function_name, args=arguments, body=body or [gast.Pass()],
                            decorator_list=[], returns=None, type_comment=None,
                            type_params=[])


def _under_shared_guards(updates):
    """``updates`` with consecutive ones under the same guard in one ``if``: a branch of
    ``a if c else b`` reading several leaves reads as one branch in the reverse sweep too."""
    out = []
    for update in updates:
        if isinstance(update, gast.If) and out and isinstance(out[-1], gast.If) \
                and same(out[-1].test, update.test):
            out[-1].body += update.body
        else:
            out.append(update)
    return out
