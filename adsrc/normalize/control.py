"""Structuring ``break`` and ``continue`` so that every loop body is reversible.

The reverse sweep mirrors the structure of the forward code, so a loop body must not jump.  An
``if`` that breaks or continues gets the rest of the loop body moved into its branches:

    for i in range(n):              for i in range(n):
        a(i)                            a(i)
        if c(i):            ->          if c(i):
            continue                        pass
        b(i)                            else:
                                            b(i)

A ``break`` stays, as the last statement of its branch; the loop then counts its trips so that the
reverse sweep knows how many iterations to undo.

Moving the rest into both branches copies it once per path through the ``if`` that does not
jump, which doubles the code with every nested ``if a: if b: continue`` of a loop body, and
nests the body one level deeper with every ``if`` that jumps, so that the code of a body of k
of them grows as k squared.  Where more than one path goes on, or more jumps follow, and the
``if`` only continues, a flag says whether the rest runs instead (an ``int`` local, generated):

    for i in range(n):              for i in range(n):
        if a(i):                        _more0 = 1
            if b(i):        ->          if a(i):
                continue                    if b(i):
        c(i)                                    _more0 = 0
        if d(i):                        if _more0 == 1:
            continue                        c(i)
        e(i)                                if d(i):
                                                _more0 = 0
                                        if _more0 == 1:
                                            e(i)

One flag serves the rest of the body: each stretch up to the next ``if`` that continues gets a
guard of its own, side by side, so the body nests no deeper with more of them.

A ``break`` cannot be flagged so: nothing may follow it on its trip, since the reverse sweep of the
loop's last trip undoes the statements of its body that the trip ran, from the branches taken.
"""

import copy

import gast

from adsrc.frontend.quoting import located, quote, quote_expr


def _exits(stmt):
    """Whether ``stmt`` contains a break/continue of the enclosing loop."""
    if isinstance(stmt, (gast.Break, gast.Continue)):
        return True
    if isinstance(stmt, gast.If):
        return any(_exits(sub) for sub in stmt.body + stmt.orelse)
    return False


def _breaks(stmt):
    """Whether ``stmt`` contains a break of the enclosing loop."""
    if isinstance(stmt, gast.Break):
        return True
    return isinstance(stmt, gast.If) and any(_breaks(sub) for sub in stmt.body + stmt.orelse)


def _paths_on(stmts):
    """How many paths through ``stmts`` reach their end without a jump: the number of copies
    structuring makes of the statements after them."""
    paths = 1
    for stmt in stmts:
        if isinstance(stmt, (gast.Break, gast.Continue)):
            return 0
        if isinstance(stmt, gast.If) and _exits(stmt):
            paths *= _paths_on(stmt.body) + _paths_on(stmt.orelse)
    return paths


def _structure(stmts, namer, on_continue=(), flag=None):
    """``stmts``, the rest of a loop body, without jumps but a final ``break``; a ``continue``
    becomes ``on_continue`` (the statements that clear the flag, or none).  ``flag``: the flag
    that says whether the rest of the trip runs, once one has been set."""
    out = []
    for position, stmt in enumerate(stmts):
        if isinstance(stmt, gast.Break):
            out.append(stmt)
            return out
        if isinstance(stmt, gast.Continue):
            return out + located(copy.deepcopy(list(on_continue)), stmt) or [gast.Pass()]
        if isinstance(stmt, gast.If) and _exits(stmt):
            rest = stmts[position + 1:]
            if rest and not _breaks(stmt) and (
                    flag is not None or any(_exits(after) for after in rest)
                    or _paths_on(stmt.body) + _paths_on(stmt.orelse) > 1):
                return out + _flagged(stmt, rest, namer, on_continue, flag)
            # the rest goes only to the branches with a path that does not jump (after a
            # jump, structuring would drop it): one of them takes the statements themselves
            going_on = [field for field in ("body", "orelse")
                        if _paths_on(getattr(stmt, field)) > 0]
            for copies, field in enumerate(going_on):
                moved = copy.deepcopy(rest) if copies else rest
                setattr(stmt, field, getattr(stmt, field) + moved)
            stmt.body = _structure(stmt.body, namer, on_continue, flag) or [gast.Pass()]
            stmt.orelse = _structure(stmt.orelse, namer, on_continue, flag)
            out.append(stmt)
            return out
        out.append(stmt)
    return out


def _flagged(stmt, rest, namer, on_continue, flag):
    """``stmt`` (an ``if`` that continues on some paths) and ``rest`` after it, in stretches
    guarded by a flag that its continues clear (see the module docstring): the flag of the
    body, set here if it has none yet."""
    start = []
    if flag is None:
        flag = namer.fresh("more")
        on_continue = quote(f"{flag} = 0") + list(on_continue)
        start = located(quote(f"{flag} = 1"), stmt)
    stmt.body = _structure(stmt.body, namer, on_continue, flag) or [gast.Pass()]
    stmt.orelse = _structure(stmt.orelse, namer, on_continue, flag)
    out = start + [stmt]
    after = stmt
    for stretch in _stretches(rest):
        guarded = gast.If(test=located([quote_expr(f"{flag} == 1")], after)[0],
                          body=_structure(stretch, namer, on_continue, flag) or [gast.Pass()],
                          orelse=[])
        # the guard at the if it follows, the statements it guards where they were written:
        # an error in one names its own line
        gast.copy_location(guarded, after)
        out.append(guarded)
        after = stretch[-1]
    return out


def _stretches(stmts):
    """``stmts`` cut after each ``if`` that continues: the statements each guard of the flag
    takes.  An ``if`` that breaks takes all the rest into its branches (nothing may follow a
    break on its trip), and nothing after a bare jump runs."""
    out, current = [], []
    for position, stmt in enumerate(stmts):
        current.append(stmt)
        if isinstance(stmt, (gast.Break, gast.Continue)):
            break
        if isinstance(stmt, gast.If) and _exits(stmt):
            if _breaks(stmt):
                current += stmts[position + 1:]
                break
            out.append(current)
            current = []
    return out + [current] if current else out


def contains_break(stmts):
    """Whether a loop body (after structuring) can leave its loop early."""
    for stmt in stmts:
        if isinstance(stmt, gast.Break):
            return True
        if isinstance(stmt, gast.If) and contains_break(stmt.body + stmt.orelse):
            return True
    return False


class StructureJumps(gast.NodeVisitor):
    def __init__(self, namer):
        self.namer = namer          # for the flags

    def run(self, tree):
        self.visit(tree)
        return tree

    def visit_For(self, node):
        self.generic_visit(node)
        node.body = _structure(node.body, self.namer) or [gast.Pass()]

    visit_While = visit_For
