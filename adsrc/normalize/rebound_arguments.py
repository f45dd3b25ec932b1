"""Array arguments bound to new values: ``v = w / norm``, ``x = x + alpha * p``.

In Python such a binding leaves the caller's array alone: the name holds a new array from then
on.  adsrc keeps one array per name and fills it in place (see
:mod:`adsrc.normalize.lower_arrays`), which for an argument would write into the caller's array.
So an argument the kernel binds again is copied, at the start, into a local array that takes its
place everywhere in the body (``v`` becomes ``v_2``, which ``tree.adsrc_user_names`` maps back
to ``v`` for messages): the caller's array is read once and never written, as in Python.

That is exact only if no write into the argument in place (``v[i] = ...``, ``v += ...``, a user
call writing it) can come before the binding: Python would write the caller's array there, the
copy would not.  A write that every path reaches after a binding of the name writes the new
array in both (the walk of :class:`adsrc.frontend.unbound_reads.BoundNames`); any other write is
refused.  So is an argument handed to another name by a tuple
assignment, ``x, y = y, x``: local arrays are swapped by copying values (see
:mod:`adsrc.analyses.types`), but afterwards ``y`` would be the caller's array.
"""

import gast

from adsrc.analyses.effects import walk_statements
from adsrc.frontend.quoting import located, quote
from adsrc.frontend.unbound_reads import BoundNames
from adsrc.naming import variant


def _own_nodes(stmt):
    """The nodes of a statement but those of the statements nested in it."""
    if isinstance(stmt, (gast.If, gast.While)):
        return gast.walk(stmt.test)
    if isinstance(stmt, gast.For):
        return gast.walk(stmt.iter)
    return gast.walk(stmt)


def _binds(stmt, param):
    return isinstance(stmt, gast.Assign) and isinstance(stmt.targets[0], gast.Name) \
        and stmt.targets[0].id == param


class ReboundArguments:
    def __init__(self, source, signature, user_functions, written_params):
        self.source = source
        self.signature = signature
        self.user_functions = user_functions
        self.written_params = written_params    # function -> indices of the arrays it writes

    def run(self, tree):
        taken = {node.id for node in gast.walk(tree) if isinstance(node, gast.Name)}
        for param, kind in zip(self.source.params, self.signature):
            if kind.is_array:
                self._check_not_swapped(tree.body, param)
            if not (kind.is_array and kind.is_float):
                continue
            bindings = [stmt for stmt in walk_statements(tree.body) if _binds(stmt, param)]
            if not bindings:
                continue
            self._check_writes(tree.body, param, bindings[0])
            local = variant(param, taken)
            taken.add(local)
            for node in gast.walk(tree):
                if isinstance(node, gast.Name) and node.id == param \
                        and not isinstance(node.ctx, gast.Param):
                    node.id = local
            taking = quote("L = np.copy(P)", L=local, P=param)
            tree.body[:0] = located(taking, bindings[0])
            tree.adsrc_user_names = {**getattr(tree, "adsrc_user_names", {}), local: param}
        return tree

    def _check_not_swapped(self, body, param):
        """Refuse ``x, y = y, x`` with an argument ``x``: afterwards ``y`` holds the caller's
        array and writes into it reach the caller, which a copy of the values (how local arrays
        are swapped) would not.  (A name stored into elements is read at its store, not held:
        :meth:`adsrc.frontend.fence.Fence._tuple_assignment`.)"""
        for stmt in walk_statements(body):
            if getattr(stmt, "adsrc_tuple_value", False) and isinstance(stmt.value, gast.Name) \
                    and stmt.value.id == param:
                raise self.source.error(
                    stmt, f"a tuple assignment of the argument '{param}' to another name "
                          f"(as in 'x, y = y, x'): afterwards that name holds the caller's "
                          f"array, which adsrc, filling one array per name in place, cannot "
                          f"follow; swap values instead ('t = x.copy(); x[:] = y; y[:] = t'), "
                          f"or swap local arrays (copies of the arguments)")

    def _check_writes(self, body, param, binding):
        """Refuse a write into ``param`` in place that some path reaches before a binding of
        the name; after one on every path, the write is into the new array, in Python as in
        the copy (``x = A @ y; x[0] = 0.0`` in a loop's body)."""
        def check(stmt, bound):
            if param not in bound:
                for node in _own_nodes(stmt):
                    if self._writes(node, param):
                        line = self.source.location(binding)[1]
                        raise self.source.error(
                            node, f"'{param}' is an argument that the kernel binds to a new "
                                  f"array (line {line}) and writes in place here, where the "
                                  f"caller's array may still be the one it names: write "
                                  f"'{param}[:] = ...' to update the caller's array, or copy "
                                  f"it first ('{param}_new = {param}.copy()') and work on the "
                                  f"copy")
            return []

        BoundNames(check).block(body, frozenset())

    def _writes(self, node, param):
        if isinstance(node, (gast.Assign, gast.AugAssign)):
            target = node.targets[0] if isinstance(node, gast.Assign) else node.target
            while isinstance(target, gast.Subscript):
                target = target.value
            return isinstance(target, gast.Name) and target.id == param and (
                isinstance(node, gast.AugAssign) or target is not node.targets[0])
        if isinstance(node, gast.Call) and isinstance(node.func, gast.Name) \
                and node.func.id in self.user_functions:
            written = self.written_params(self.user_functions[node.func.id])
            return any(isinstance(arg, gast.Name) and arg.id == param and position in written
                       for position, arg in enumerate(node.args))
        return False
