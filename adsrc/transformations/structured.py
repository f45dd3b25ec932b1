"""Rewriting a generated function statement by statement, its loops and branches kept.

The passes over generated code (the tangent of the adjoint, vector mode) change simple
statements and leave the control flow as it is; this base class walks the control flow once, for
both.
"""

import copy

import gast


class StructuredRewrite:
    """Subclasses give :meth:`simple`: the statements that replace one statement that is not a
    loop or a branch."""

    def block(self, stmts):
        out = []
        for stmt in stmts:
            out.extend(self.statement(stmt))
        return out or [gast.Pass()]

    def statement(self, stmt):
        if isinstance(stmt, (gast.For, gast.While)):
            loop = copy.copy(stmt)
            loop.body = self.block(stmt.body)
            return [copy.deepcopy(loop)]
        if isinstance(stmt, gast.If):
            return [gast.If(test=copy.deepcopy(stmt.test), body=self.block(stmt.body),
                            orelse=self.block(stmt.orelse) if stmt.orelse else [])]
        return self.simple(stmt)

    def simple(self, stmt):
        raise NotImplementedError
