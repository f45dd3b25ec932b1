"""Which primal values the reverse sweep reads, statement by statement.

For an active assignment these are the values inside its partial derivatives and their guards
(from :mod:`adsrc.rules.elementary`), the indices of the elements whose adjoints it updates,
and, when the derivative is written with the statement's result, the target's new value.  A user
call's reverse re-reads its arguments.  Every store may have to restore the old value of its
target, so the target's index is needed too.  Loop bounds and branch conditions are not listed
here: the transformation recomputes or records them (see :mod:`adsrc.analyses.recompute`).
"""

from dataclasses import dataclass, field

import gast

from adsrc.analyses.effects import names_read, rule_call, user_call, walk_statements
from adsrc.frontend.quoting import name
from adsrc.rules import elementary

RESULT = "_r"


@dataclass
class StatementNeeds:
    pre: set = field(default_factory=set)    # values as they were before the statement
    post: set = field(default_factory=set)   # values as the statement left them
    # the array elements among ``pre`` that the partials read: (array, index expression)
    elements: list = field(default_factory=list)


class AdjointNeeds:
    """``needs[id(stmt)]`` for every assignment and call statement of a kernel."""

    def __init__(self, source, tree, env, active, user_functions):
        self.source = source
        self.env = env
        self.tree = tree
        self.active = active
        self.user_functions = user_functions

    def is_active(self, leaf):
        root = leaf.id if isinstance(leaf, gast.Name) else leaf.value.id
        return root in self.active

    def fail(self, node, message):
        raise self.source.error(node, message)

    def run(self):
        needs = {}
        for stmt in walk_statements(self.tree.body):
            if isinstance(stmt, (gast.Assign, gast.Expr)):
                needs[id(stmt)] = self.of(stmt)
        return needs

    def of(self, stmt):
        result = StatementNeeds()
        call = user_call(stmt, self.user_functions)
        if call is not None:
            result.pre |= names_read(call)
            result.pre.discard(call.func.id)
            return result
        if isinstance(stmt, gast.Expr) or rule_call(stmt) is not None:
            return result       # a rule's reverse reads only what its forward part saved
        target = stmt.targets[0]
        if isinstance(target, gast.Subscript):
            result.pre |= names_read(target.slice)
        root = target.id if isinstance(target, gast.Name) else target.value.id
        if root not in self.active or self.env[root].is_array and isinstance(target, gast.Name):
            return result       # inactive, or the allocation of a local array
        uses_result = elementary.uses_result(stmt.value, self.is_active, self.fail)
        if uses_result:
            result.post.add(root)
        for leaf, partial, guard in elementary.partials(
                stmt.value, self.is_active, self.fail, name(RESULT) if uses_result else None):
            if isinstance(leaf, gast.Subscript):
                result.pre |= names_read(leaf.slice)
            for read in (partial, guard):
                if read is not None:
                    result.pre |= names_read(read) - {RESULT}
                    result.elements += [(node.value.id, node.slice) for node in gast.walk(read)
                                        if isinstance(node, gast.Subscript)
                                        and isinstance(node.value, gast.Name)]
        return result
