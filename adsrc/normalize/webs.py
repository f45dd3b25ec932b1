"""Splitting a scalar's independent live ranges (webs) into distinct names.

The analyses key everything on names.  A temporary that a kernel reuses in two sibling loops
(``t = x[i] * x[i]`` in one, ``t = y[i] + x[i]`` in the next) is then one variable that lives
across both loops: recomputation no longer takes it as local to a loop body, and the
to-be-recorded analysis saves it at every assignment.  Yet the two uses never see each other's
values.  A *web* is a set of assignments of a name together with the reads they reach, closed
under "a read reached by two assignments joins them"; giving each web its own name (``t``,
``t_2``) changes nothing Python computes and lets the analyses see each web as the variable it
is.

Reaching definitions are computed over the structured kernel (``for``, ``while``, ``if``; after
:mod:`adsrc.normalize.control` a ``break`` is the last statement of a branch and there is no
``continue``).  Every analysis step may only over-approximate what reaches a read (a loop may run
zero times, a ``while`` test reads the values of the entry and of the end of the body, a
``break`` carries its values past the loop), which can only merge webs, never split one.  So a
value carried to the next iteration, read after its loop, or assigned in both branches of an
``if`` and read after it stays in one web.  The kernel's entry counts as an assignment: the web
of a read that may come before any assignment keeps the name.

Only the user's int and float scalars are split.  Parameters, arrays, loop counters, generated
temporaries, the names the returned expression reads, and the names assigned from or passed to
user kernels and derivative rules stay as they are, as does a name with an occurrence this
analysis does not follow (a statement or expression outside the normal form leaves the whole
kernel as it is).  The renamed kernel is typed again, and a split is kept only if every name
keeps its type and each web has the type of the name it came from (a web assigned only integers
would otherwise become an int): the generated code of each web is then what it was, only under
its own name.  Only ``Name.id`` changes, so every node keeps its location and errors and
comments still point at the user's lines.
"""

import gast

from adsrc.analyses.effects import is_rule_call, walk_statements
from adsrc.analyses.types import FLOAT, INT
from adsrc.naming import variant
from adsrc.normalize.desugar import RETURN

_ENTRY = "entry"        # the definition a name has on entry to the kernel


class _NotNormalForm(Exception):
    """A construct the reaching definitions do not follow: nothing is split."""


def _own_expressions(stmt):
    """The expressions a statement evaluates itself, not counting nested statements."""
    if isinstance(stmt, gast.For):
        if stmt.orelse:
            raise _NotNormalForm
        return [stmt.iter]
    if isinstance(stmt, (gast.If, gast.While)):
        if isinstance(stmt, gast.While) and stmt.orelse:
            raise _NotNormalForm
        return [stmt.test]
    if isinstance(stmt, gast.Assign):
        target = stmt.targets[0]
        return [stmt.value] + ([target] if isinstance(target, gast.Subscript) else [])
    if isinstance(stmt, gast.Assert):
        return [stmt.test] + ([stmt.msg] if stmt.msg is not None else [])
    if isinstance(stmt, (gast.Expr, gast.Return)):
        return [stmt.value] if stmt.value is not None else []
    if isinstance(stmt, (gast.Break, gast.Pass)):
        return []
    raise _NotNormalForm


class _ReachingDefinitions:
    """Which assignments of each candidate name reach each of its reads.

    A state is a set of definitions ``(name, id of the assignment or _ENTRY)``; ``reaching``
    maps the id of each read (a ``Name`` node in Load context) to the definitions that reach it
    on some pass over the code.
    """

    def __init__(self, names):
        self.names = names
        self.reads = {}          # id(Name) -> Name, the reads of candidate names
        self.reaching = {}       # id(Name) -> definitions reaching that read
        self._breaks = []        # per enclosing loop: the states its breaks leave with

    def run(self, tree):
        self._block(tree.body, {(name, _ENTRY) for name in self.names})
        return self

    def _block(self, stmts, state):
        for stmt in stmts:
            state = self._statement(stmt, state)
            if state is None:       # after a break
                return None
        return state

    def _read(self, stmt, state):
        for expr in _own_expressions(stmt):
            for node in gast.walk(expr):
                if isinstance(node, (gast.Lambda, gast.comprehension)):
                    raise _NotNormalForm
                if isinstance(node, gast.Name) and node.id in self.names:
                    if not isinstance(node.ctx, gast.Load):
                        raise _NotNormalForm
                    self.reads[id(node)] = node
                    self.reaching.setdefault(id(node), set()).update(
                        definition for definition in state if definition[0] == node.id)

    def _statement(self, stmt, state):
        self._read(stmt, state)
        if isinstance(stmt, gast.Assign):
            target = stmt.targets[0]
            if isinstance(target, gast.Name) and target.id in self.names:
                return {definition for definition in state if definition[0] != target.id} \
                    | {(target.id, id(stmt))}
            return state
        if isinstance(stmt, gast.If):
            left = self._block(stmt.body, set(state))
            right = self._block(stmt.orelse, set(state))
            if left is None and right is None:
                return None
            return (left or set()) | (right or set())
        if isinstance(stmt, (gast.For, gast.While)):
            return self._loop(stmt, state)
        if isinstance(stmt, gast.Break):
            if not self._breaks:
                raise _NotNormalForm
            self._breaks[-1].append(state)
            return None
        return state

    def _loop(self, loop, entry):
        """To a fixed point: a body starts with the entry values or those of the end of the body
        (the previous trip), and the loop is left with those (no further trip; a ``while``
        test reads them too) or with a break's."""
        body_in = set(entry)
        while True:
            self._breaks.append([])
            body_out = self._block(loop.body, set(body_in))
            breaks = self._breaks.pop()
            if isinstance(loop, gast.While):
                self._read(loop, body_in | (body_out or set()))
            if (body_out or set()) <= body_in:
                return body_in.union(*breaks)
            body_in |= body_out


class _UnionFind:
    def __init__(self):
        self.parent = {}

    def find(self, item):
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a, b):
        self.parent[self.find(a)] = self.find(b)


def _is_call_with_rule_or_kernel(node, user_functions):
    return is_rule_call(node) or (isinstance(node, gast.Call) and isinstance(node.func, gast.Name)
                                  and node.func.id in user_functions)


class SplitWebs:
    """Renames the webs of scalar locals, in place; ``infer()`` types the current tree."""

    def __init__(self, params, user_functions, infer):
        self.params = set(params)
        self.user_functions = user_functions
        self.infer = infer

    def run(self, tree):
        env = self.infer().run()
        try:
            split = self._webs(tree, self._candidates(tree, env))
        except _NotNormalForm:
            return tree
        renamed = self._rename(tree, split)
        while renamed:
            typed = self.infer().run()
            split = {original for original, _ in renamed.values()}
            changed = {original for new, (original, _) in renamed.items()
                       if typed.get(new) != env[original]}
            changed |= {name for name in split if typed.get(name) != env[name]}
            if any(typed.get(name) != kind for name, kind in env.items() if name not in split):
                changed = split
            if not changed:
                break
            for new in [new for new, (original, _) in renamed.items() if original in changed]:
                original, nodes = renamed.pop(new)
                for node in nodes:
                    node.id = original
        return tree

    def _candidates(self, tree, env):
        """The user's int and float scalars whose every occurrence is a plain assignment or a
        read in a statement of the normal form."""
        names = {name for name, kind in env.items()
                 if kind in (INT, FLOAT) and not name.startswith("_")} - self.params - {RETURN}
        for node in gast.walk(tree):
            if isinstance(node, gast.For):
                names -= {sub.id for sub in gast.walk(node.target) if isinstance(sub, gast.Name)}
            elif isinstance(node, gast.Return) or (isinstance(node, gast.Assign) and isinstance(
                    node.targets[0], gast.Name) and node.targets[0].id == RETURN):
                names -= {sub.id for sub in gast.walk(node) if isinstance(sub, gast.Name)}
            elif isinstance(node, gast.Assign) and \
                    _is_call_with_rule_or_kernel(node.value, self.user_functions):
                names -= {sub.id for target in node.targets for sub in gast.walk(target)
                          if isinstance(sub, gast.Name)}
            elif _is_call_with_rule_or_kernel(node, self.user_functions):
                names -= {sub.id for arg in node.args for sub in gast.walk(arg)
                          if isinstance(sub, gast.Name)}
            elif isinstance(node, (gast.Global, gast.Nonlocal, gast.FunctionDef, gast.ClassDef,
                                   gast.AsyncFunctionDef)) and node is not tree:
                raise _NotNormalForm
        return names

    def _webs(self, tree, names):
        """Per name with more than one web: its webs, each as ``(assignments, reads)``, the one
        that keeps the name first (the entry's, when a read may see the entry; else the first
        assigned), the others in the source order of their first assignment."""
        flow = _ReachingDefinitions(names).run(tree)
        assignments = {}            # name -> the assignments of the name, in source order
        for stmt in walk_statements(tree.body):
            if isinstance(stmt, gast.Assign) and isinstance(stmt.targets[0], gast.Name) \
                    and stmt.targets[0].id in names:
                assignments.setdefault(stmt.targets[0].id, []).append(stmt)
        followed = set(flow.reads) | {id(stmt.targets[0]) for stmts in assignments.values()
                                      for stmt in stmts}
        names = names - {node.id for node in gast.walk(tree)
                         if isinstance(node, gast.Name) and id(node) not in followed}
        webs = _UnionFind()
        for reaching in flow.reaching.values():
            first, *rest = reaching
            for other in rest:
                webs.union(first, other)
        split = {}
        for name in sorted(names):
            parts = {}              # root of a web -> (its assignments, its reads)
            first = {}              # root of a web -> position of its first assignment
            for position, stmt in enumerate(assignments.get(name, [])):
                root = webs.find((name, id(stmt)))
                parts.setdefault(root, ([], []))[0].append(stmt)
                first.setdefault(root, position)
            for read, node in flow.reads.items():
                if node.id == name:
                    root = webs.find(next(iter(flow.reaching[read])))
                    parts.setdefault(root, ([], []))[1].append(node)
            if len(parts) < 2:
                continue
            entry = webs.find((name, _ENTRY))
            split[name] = [parts[root] for root in
                           sorted(parts, key=lambda root: (root != entry, first.get(root, -1)))]
        return split

    def _rename(self, tree, split):
        """Gives every web but the first a new name; returns new name -> (original name, the
        web's Name nodes)."""
        taken = {node.id for node in gast.walk(tree) if isinstance(node, gast.Name)} | self.params
        renamed = {}
        for name, webs in split.items():
            for stmts, reads in webs[1:]:
                new = variant(name, taken)
                taken.add(new)
                renamed[new] = (name, [stmt.targets[0] for stmt in stmts] + reads)
                for node in renamed[new][1]:
                    node.id = new
        return renamed
