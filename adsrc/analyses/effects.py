"""Read and write sets of normalised statements, and who writes which argument of a call.

Everything here is syntactic.  A call of a user kernel writes the arrays passed at the positions
its callee writes (``Program.written_params`` computes that, through recursion, as a fixed
point); scalars are passed by value and are never written by a call.
"""

import gast

from adsrc.rules.library import RULES


def names_read(node, shapes=True):
    """Variables read (Load context) anywhere in an expression or statement; the names of
    called functions are not variables.  With ``shapes=False``, arrays read only for their
    shape (``x.shape[0]``, ``len(x)``) are left out: a shape never changes."""
    skipped = set()
    for sub in gast.walk(node):
        if isinstance(sub, gast.Call):
            skipped.add(id(sub.func))
            if not shapes and isinstance(sub.func, gast.Name) and sub.func.id == "len":
                skipped.update(id(arg) for arg in sub.args)
        elif not shapes and isinstance(sub, gast.Attribute) and sub.attr == "shape":
            skipped.add(id(sub.value))
    return {sub.id for sub in gast.walk(node)
            if isinstance(sub, gast.Name) and isinstance(sub.ctx, gast.Load)
            and id(sub) not in skipped}


def target_root(target):
    """The variable a store writes: ``x`` for ``x`` and for ``x[i]``."""
    return target.id if isinstance(target, gast.Name) else target.value.id


def user_call(stmt, user_functions):
    """The user-kernel call of a call statement or ``v = g(...)``, else None."""
    value = stmt.value if isinstance(stmt, (gast.Assign, gast.Expr)) else None
    if isinstance(value, gast.Call) and isinstance(value.func, gast.Name) \
            and value.func.id in user_functions:
        return value
    return None


def is_rule_call(node):
    """Whether an expression is a call of a library function with a derivative rule (the
    fence spells those ``_rules.<name>(...)``, see :mod:`adsrc.rules.library`)."""
    return isinstance(node, gast.Call) and isinstance(node.func, gast.Attribute) \
        and isinstance(node.func.value, gast.Name) and node.func.value.id == RULES


def rule_call(stmt):
    """The rule call of ``v = f(...)`` or ``a[:] = f(...)``, else None."""
    if isinstance(stmt, gast.Assign) and is_rule_call(stmt.value):
        return stmt.value
    return None


class Effects:
    """Per-kernel write information, given the written-parameter summaries of callees."""

    def __init__(self, user_functions, written_params):
        self.user_functions = user_functions          # name -> function object
        self.written_params = written_params          # function object -> set of param indices

    def call_writes(self, call):
        """Names of the array arguments a user call writes."""
        callee = self.user_functions[call.func.id]
        return {arg.id for position, arg in enumerate(call.args)
                if position in self.written_params(callee) and isinstance(arg, gast.Name)}

    def writes(self, stmt):
        """Variables one statement writes, not counting nested statements."""
        if isinstance(stmt, gast.Assign):
            written = {target_root(stmt.targets[0])}
            call = user_call(stmt, self.user_functions)
            if call is not None:
                written |= self.call_writes(call)
            return written
        if isinstance(stmt, gast.Expr):
            call = user_call(stmt, self.user_functions)
            return self.call_writes(call) if call is not None else set()
        if isinstance(stmt, gast.For):
            return {stmt.target.id}
        return set()

    def written_anywhere(self, stmts):
        """Variables written anywhere in a block, nested statements included."""
        written = set()
        for stmt in walk_statements(stmts):
            written |= self.writes(stmt)
        return written


def walk_statements(stmts):
    """Every statement of a block, nested ones included, in source order."""
    for stmt in stmts:
        yield stmt
        for field in ("body", "orelse"):
            yield from walk_statements(getattr(stmt, field, []) or [])


def directly_written_params(tree):
    """Indices of the parameters a (fenced, not normalised) kernel writes through subscripts or
    whole-array augmented assignments, and the user calls it makes with their argument names."""
    params = [arg.id for arg in tree.args.args]
    written = set()
    calls = []
    for node in gast.walk(tree):
        if isinstance(node, (gast.Assign, gast.AugAssign)):
            targets = node.targets if isinstance(node, gast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, gast.Subscript) and isinstance(target.value, gast.Name):
                    written.add(target.value.id)
                elif isinstance(node, gast.AugAssign) and isinstance(target, gast.Name):
                    written.add(target.id)
        if isinstance(node, gast.Call) and isinstance(node.func, gast.Name):
            calls.append(node)
    return {params.index(name) for name in written if name in params}, calls
