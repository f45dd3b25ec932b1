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
"""

import copy

import gast


def _exits(stmt):
    """Whether ``stmt`` contains a break/continue of the enclosing loop."""
    if isinstance(stmt, (gast.Break, gast.Continue)):
        return True
    if isinstance(stmt, gast.If):
        return any(_exits(sub) for sub in stmt.body + stmt.orelse)
    return False


def _structure(stmts):
    out = []
    for position, stmt in enumerate(stmts):
        if isinstance(stmt, gast.Break):
            out.append(stmt)
            return out
        if isinstance(stmt, gast.Continue):
            return out or [gast.Pass()]
        if isinstance(stmt, gast.If) and _exits(stmt):
            rest = stmts[position + 1:]
            stmt.body = _structure(stmt.body + copy.deepcopy(rest)) or [gast.Pass()]
            stmt.orelse = _structure(stmt.orelse + copy.deepcopy(rest))
            out.append(stmt)
            return out
        out.append(stmt)
    return out


def contains_break(stmts):
    """Whether a loop body (after structuring) can leave its loop early."""
    for stmt in stmts:
        if isinstance(stmt, gast.Break):
            return True
        if isinstance(stmt, gast.If) and contains_break(stmt.body + stmt.orelse):
            return True
    return False


class StructureJumps(gast.NodeVisitor):
    def run(self, tree):
        self.visit(tree)
        return tree

    def visit_For(self, node):
        self.generic_visit(node)
        node.body = _structure(node.body) or [gast.Pass()]

    visit_While = visit_For
