"""Activity analysis: which variables carry derivatives.

A variable is *varied* if it depends on a ``wrt`` input and *useful* if an output depends on it;
it is *active* if both, and float-typed.  Integer and index values are never active.  Only active
variables get an adjoint variable and adjoint statements.

The analysis is flow-insensitive over a dependence graph (an edge ``u -> v`` for every store of a
value computed from ``u`` into ``v``, element stores included, so loop-carried and in-place
dependences are covered).  A call of a user kernel links every float argument to every array it
writes and to its result.
"""

import gast

from adsrc.analyses.effects import target_root, user_call, walk_statements


def _value_names(expr, env):
    """Float names whose values flow into an expression (index expressions excluded)."""
    found = set()

    def visit(node):
        if isinstance(node, gast.Name):
            kind = env.get(node.id)
            if kind is not None and kind.is_float:
                found.add(node.id)
        elif isinstance(node, gast.Subscript):
            visit(node.value)
        elif isinstance(node, gast.Attribute):
            return
        else:
            for child in gast.iter_child_nodes(node):
                visit(child)

    visit(expr)
    return found


class Activity:
    def __init__(self, tree, env, effects, wrt, outputs):
        self.tree = tree
        self.env = env
        self.effects = effects
        self.wrt = set(wrt)
        self.outputs = set(outputs)

    def _edges(self):
        edges = []
        for stmt in walk_statements(self.tree.body):
            if isinstance(stmt, (gast.Assign, gast.Expr)):
                call = user_call(stmt, self.effects.user_functions)
                if call is not None:
                    sources = set().union(*[_value_names(arg, self.env) for arg in call.args]) \
                        if call.args else set()
                    sinks = set(self.effects.call_writes(call))
                    if isinstance(stmt, gast.Assign):
                        sinks.add(stmt.targets[0].id)
                    edges.extend((source, sink) for source in sources for sink in sinks)
                elif isinstance(stmt, gast.Assign):
                    sink = target_root(stmt.targets[0])
                    edges.extend((source, sink) for source in _value_names(stmt.value, self.env))
        return edges

    def run(self):
        edges = self._edges()
        varied = self._closure(self.wrt, edges)
        useful = self._closure(self.outputs, [(b, a) for a, b in edges])
        return {name for name in varied & useful
                if self.env.get(name) is not None and self.env[name].is_float}

    @staticmethod
    def _closure(start, edges):
        reached = set(start)
        changed = True
        while changed:
            changed = False
            for source, sink in edges:
                if source in reached and sink not in reached:
                    reached.add(sink)
                    changed = True
        return reached

