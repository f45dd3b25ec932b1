"""Desugaring: augmented assignments, the return value, and hoisting of nested calls.

* ``u.size`` becomes ``u.shape[0] * u.shape[1]`` (``u.shape[0]`` in 1-D);
* ``a op= e`` becomes ``a = a op e`` (a whole array ``x += e`` becomes ``x[:] = x[:] + e``, which
  keeps NumPy's in-place meaning);
* ``return e`` becomes ``_ret = e`` followed by ``return _ret``, so the result is a variable;
* ``np.dot(M, v)`` of a 2-D array becomes ``M @ v`` (a matrix-vector product, lowered to loops
  with the statement that uses it), and ``a @ b`` of 1-D arrays becomes ``np.dot(a, b)``;
* reductions to a float (``np.dot``, ``np.sum``, ``np.mean``, ``np.max``, ``np.min``) and
  user-kernel calls nested inside an expression are computed into temporaries first, and float
  arguments of user calls become names, so that every call's adjoint has a variable to send its
  derivative to.  Every user call's result goes to a temporary that only a copy reads
  (``t = g(...)`` becomes ``_t0 = g(...); t = _t0``): the analyses see a call only as a
  statement or as the whole right-hand side of an assignment to a name, and the target never
  needs recording before the call (see ``_call_result``);
* so are those in the index of an element or slice assigned to (``x[first(y):] = ...``), after
  those of the value, as Python evaluates them;
* the calls in ``range(...)`` bounds and in an ``if`` or ``while`` condition are computed before
  the statement, and for a ``while`` again at the end of the body (and before each
  ``continue``), so the condition sees the values of the current trip:

      while np.dot(r, r) > tol:         _t0 = np.dot(r, r)
          body                  ->      while _t0 > tol:
                                            body
                                            _t0 = np.dot(r, r)

Hoisting computes a call before the rest of its statement, so a call is refused where Python
would evaluate it only conditionally: in the operands of ``and``/``or`` after the first, and in
the branches of ``a if c else b`` (not of ``np.where(c, a, b)``, which NumPy evaluates whole).
"""

import copy

import gast

from adsrc.analyses.effects import is_rule_call
from adsrc.frontend.intrinsics import REDUCTION_CALLS, along_axis, matrix_vector, scaled_matrix
from adsrc.frontend.quoting import (full_slice, located, name, quote_expr, substitute,
                                    with_ctx)
from adsrc.rules import library

RETURN = "_ret"


class _SpellSizes(gast.NodeTransformer):
    """``u.size`` as the product of the extents, ``u.shape[0] * u.shape[1]``: the one form of
    an array's extent the analyses and the compiled backend read (a memoryview's ``.size`` is
    a Python attribute)."""

    def __init__(self, env):
        self.env = env

    def visit_Attribute(self, node):
        if node.attr != "size":
            return self.generic_visit(node)
        extents = [quote_expr("A.shape[D]", A=node.value, D=gast.Constant(value=dim, kind=None))
                   for dim in range(self.env[node.value.id].ndim)]
        product = extents[0]
        for extent in extents[1:]:
            product = gast.BinOp(product, gast.Mult(), extent)
        for sub in gast.walk(product):
            gast.copy_location(sub, node)
        return product


class Desugar:
    def __init__(self, source, env, namer, user_functions, written_params):
        self.source = source
        self.env = env
        self.namer = namer
        self.user_functions = user_functions
        self.written_params = written_params    # function -> indices of the arrays it writes
        self._current = None                    # the statement being rewritten

    def run(self, tree):
        _SpellSizes(self.env).visit(tree)
        tree.body = self._block(tree.body)
        return tree

    def _block(self, stmts):
        out = []
        for stmt in stmts:
            out.extend(self._statement(stmt))
        return out

    def _statement(self, stmt):
        if isinstance(stmt, gast.AugAssign):
            stmt = self._augassign(stmt)
        self._current = stmt
        if isinstance(stmt, gast.Assign):
            before = []
            stmt.value = self._hoist_nested(stmt.value, before, top=True)
            if self._is_user_call(stmt.value):
                stmt.value = self._call_result(stmt.value, before)
            target = stmt.targets[0]
            if isinstance(target, gast.Subscript):      # evaluated after the value, as here
                target.slice = self._hoist_nested(target.slice, before, top=False)
            if is_rule_call(stmt.value):
                self._rule_target(stmt, before)
            return before + [stmt]
        if isinstance(stmt, gast.Expr):
            before = []
            stmt.value = self._hoist_nested(stmt.value, before, top=True)
            return before + [stmt]
        if isinstance(stmt, gast.Return):
            if stmt.value is None:
                return []
            before = []
            value = self._hoist_nested(stmt.value, before, top=True)
            assign = gast.copy_location(
                gast.Assign(targets=[name(RETURN, store=True)], value=value, type_comment=None),
                stmt)
            return before + [assign, gast.copy_location(gast.Return(value=name(RETURN)), stmt)]
        # a loop's or a branch's body runs after its header: only the header is 'the rest of
        # the statement' a call hoisted out of it must not write (check_evaluation_order)
        if isinstance(stmt, gast.For):
            self._current = stmt.iter
            before = []
            stmt.iter.args = [self._hoist_nested(arg, before, top=False) for arg in stmt.iter.args]
            stmt.body = self._block(stmt.body)
            return before + [stmt]
        if isinstance(stmt, gast.While):
            self._current = stmt.test
            before = []
            stmt.test = self._hoist_nested(stmt.test, before, top=False)
            stmt.body = self._block(stmt.body)
            if before:
                stmt.body = _before_continue(stmt.body, before) + copy.deepcopy(before)
            return before + [stmt]
        if isinstance(stmt, gast.If):
            self._current = stmt.test
            before = []
            stmt.test = self._hoist_nested(stmt.test, before, top=False)
            stmt.body = self._block(stmt.body)
            stmt.orelse = self._block(stmt.orelse)
            return before + [stmt]
        return [stmt]

    def _augassign(self, stmt):
        target = stmt.target
        kind = self.env.get(target.id) if isinstance(target, gast.Name) else None
        if kind is not None and kind.is_array:
            target = gast.Subscript(value=name(target.id), slice=full_slice(kind.ndim),
                                    ctx=gast.Store())
        value = gast.BinOp(left=with_ctx(target, gast.Load()), op=stmt.op, right=stmt.value)
        assign = gast.Assign(targets=[with_ctx(target, gast.Store())], value=value,
                             type_comment=None)
        return gast.copy_location(assign, stmt)

    def _is_user_call(self, node):
        return (isinstance(node, gast.Call) and isinstance(node.func, gast.Name)
                and node.func.id in self.user_functions)

    def _is_reduction(self, node):
        """A reduction to a float (np.sum(u, 1), a row's sums, is an array)."""
        return isinstance(node, gast.Call) and not along_axis(node) \
            and gast.unparse(node.func).strip() in REDUCTION_CALLS

    def _hoist_nested(self, node, before, top):
        """Rewrite ``node``, moving nested reductions and user calls into temporaries."""
        node = self._product_form(node)
        if self._is_user_call(node):
            if not top:
                self._check_evaluation_order(node)
            node.args = [self._user_argument(arg, before) for arg in node.args]
            return node if top else self._temporary(self._call_result(node, before), before)
        if is_rule_call(node):
            node.args = [self._user_argument(arg, before) for arg in node.args]
            if top:
                return node
            if _rule_returns(node).is_array:
                return self._filled_temporary(node, before)
            return self._temporary(node, before)
        if self._is_reduction(node):
            node.args = [self._hoist_nested(arg, before, top=False) for arg in node.args]
            return node if top else self._temporary(node, before)
        if isinstance(node, gast.BoolOp):
            for value in node.values[1:]:
                self._forbid_calls(value, "only if the operands of 'and'/'or' before it allow it")
        elif isinstance(node, gast.IfExp) and not getattr(node, "adsrc_elementwise", False):
            for value in (node.body, node.orelse):
                self._forbid_calls(value, "only when its branch of 'a if c else b' is chosen")
        for field, value in gast.iter_fields(node):
            if isinstance(value, gast.AST):
                setattr(node, field, self._hoist_nested(value, before, top=False))
            elif isinstance(value, list):
                setattr(node, field, [self._hoist_nested(item, before, top=False)
                                      if isinstance(item, gast.AST) else item for item in value])
        return node

    def _product_form(self, node):
        """``np.dot(M, v)`` of a 2-D array ``M`` as ``M @ v``, ``v @ M`` and ``np.dot(v, M)`` as
        ``M.T @ v``, and ``a @ b`` of 1-D arrays as
        ``np.dot(a, b)``: afterwards ``@`` is always an array (lowered to loops where it is
        used, like ``b - x``) and ``np.dot`` always a float (hoisted like ``np.sum``).
        ``(s * M) @ v`` with a scalar ``s`` (typing marks it) as ``s * (M @ v)``."""
        factor_first = getattr(node.left, "adsrc_factor_first", None) \
            if isinstance(node, gast.BinOp) and isinstance(node.op, gast.MatMult) else None
        if factor_first is not None:
            factor, matrix, _ = next(reading for reading in scaled_matrix(node.left)
                                     if reading[2] == factor_first)
            product = self._product_form(gast.copy_location(
                gast.BinOp(matrix, gast.MatMult(), node.right), node))
            scaled = gast.BinOp(factor, node.left.op, product) if factor_first \
                else gast.BinOp(product, node.left.op, factor)
            return gast.copy_location(scaled, node)
        if self._is_reduction(node) and gast.unparse(node.func).strip() == "np.dot" \
                and len(node.args) == 2 and (self._is_matrix(node.args[0])
                                             or self._is_matrix(node.args[1])):
            node = gast.copy_location(gast.BinOp(node.args[0], gast.MatMult(), node.args[1]),
                                      node)
        if isinstance(node, gast.BinOp) and isinstance(node.op, gast.MatMult) \
                and self._is_matrix(node.right) and not self._is_matrix(node.left):
            # v @ M is M.T @ v, and v @ M.T is M @ v
            if isinstance(node.right, gast.Attribute):
                return gast.copy_location(quote_expr("M @ V", M=node.right.value, V=node.left),
                                          node)
            return gast.copy_location(quote_expr("M.T @ V", M=node.right, V=node.left), node)
        form = matrix_vector(node)
        if isinstance(node, gast.BinOp) and isinstance(node.op, gast.MatMult) \
                and (form is None or not self._is_matrix(form[0])):
            return gast.copy_location(quote_expr("np.dot(A, B)", A=node.left, B=node.right),
                                      node)
        return node

    def _is_matrix(self, node):
        if isinstance(node, gast.Attribute) and node.attr == "T":
            node = node.value           # M.T
        kind = self.env.get(node.id) if isinstance(node, gast.Name) else None
        return kind is not None and kind.is_array and kind.ndim == 2

    def _rule_target(self, stmt, before):
        """A rule's float result may go anywhere (through a temporary); its array result is
        written into the whole of an array, which keeps every array the kernel names one the
        kernel allocated (see :mod:`adsrc.runtime.rule_calls`): ``y = solve(A, b)`` allocates
        ``y`` first, of the shape the rule declares, as ``y = np.empty(...); y[:] = ...``."""
        target, call = stmt.targets[0], stmt.value
        if not _rule_returns(call).is_array:
            if not isinstance(target, gast.Name):
                stmt.value = self._temporary(call, before)
            return
        if isinstance(target, gast.Name):
            before.append(self._allocation(target.id, call))
            stmt.targets[0] = gast.copy_location(
                gast.Subscript(name(target.id), full_slice(_rule_returns(call).ndim),
                               gast.Store()), target)
            stmt.adsrc_fills_binding = True     # a binding, not a write in place (lowering)
            return
        whole = isinstance(target, gast.Subscript) and all(
            isinstance(part, gast.Slice) and part.lower is None and part.upper is None
            and part.step is None
            for part in (target.slice.elts if isinstance(target.slice, gast.Tuple)
                         else [target.slice]))
        if not whole:
            raise self.source.error(stmt, _WHOLE_ARRAY.format(_rule_spelled(call)))

    def _filled_temporary(self, call, before):
        """A new local array holding the array result of a rule ``call`` nested in an
        expression (``r = b - A @ x`` with a sparse ``A``)."""
        temp = self.namer.fresh("t")
        before.append(self._allocation(temp, call))
        fill = gast.Assign(targets=[gast.Subscript(name(temp), full_slice(
            _rule_returns(call).ndim), gast.Store())], value=call, type_comment=None)
        before.append(located([fill], call)[0])
        return gast.copy_location(name(temp), call)

    def _allocation(self, array, call):
        """``array = np.empty(shape)``, the shape the rule of ``call`` declares, evaluated on
        the call's arguments (names or constants by now: see ``_user_argument``)."""
        declared = library.by_name(call.func.attr)
        if declared.shape is None:
            raise self.source.error(call, _NO_SHAPE.format(_rule_spelled(call)))
        named, rest = library.forward_parameters(declared)
        arguments = dict(zip(named, call.args))
        if rest is not None:
            arguments[rest] = gast.Tuple(call.args[len(named):], gast.Load())
        extents = [_Picked().visit(substitute(gast.parse(part).body[0].value, arguments))
                   for part in declared.shape]
        allocation = gast.Assign(
            targets=[name(array, store=True)],
            value=quote_expr("np.empty(S)", S=gast.Tuple(extents, gast.Load())),
            type_comment=None)
        return located([allocation], call)[0]

    def _check_evaluation_order(self, call):
        kinds = [self.env.get(arg.id) if isinstance(arg, gast.Name) else None
                 for arg in call.args]
        check_evaluation_order(self.source, call, self._current,
                               self.written_params(self.user_functions[call.func.id]), kinds)

    def _user_argument(self, arg, before):
        arg = self._hoist_nested(arg, before, top=False)
        if isinstance(arg, (gast.Name, gast.Constant)):
            return arg
        if any(isinstance(node, gast.Subscript) and _has_slice(node) for node in gast.walk(arg)):
            raise self.source.error(arg, "pass whole arrays (names) to called functions, not slices")
        return self._temporary(arg, before)

    def _call_result(self, call, before):
        """The temporary a user call's result goes to, which only the copy made of it next
        reads (``_t1 = g(...)``, then ``t = _t1``).  So the forward sweep never records the
        old value of a call's target on the tape: that record would come before the callee's
        own, and the reverse sweep, which restores the target before it runs the callee's
        reverse (that re-reads the arguments, the target among them), would pop the callee's
        records instead.  The copy's target is recorded after the call returns."""
        return self._temporary(call, before)

    def _temporary(self, value, before):
        temp = self.namer.fresh("t")
        assign = gast.Assign(targets=[name(temp, store=True)], value=value, type_comment=None)
        before.append(gast.copy_location(assign, value))
        return gast.copy_location(name(temp), value)

    def _forbid_calls(self, node, when):
        for sub in gast.walk(node):
            if self._is_user_call(sub) or self._is_reduction(sub) or is_rule_call(sub):
                raise self.source.error(sub, f"Python evaluates this call {when}, but adsrc "
                                             f"computes calls of user kernels and reductions "
                                             f"before their statement: compute it into a "
                                             f"variable first, inside an 'if'")


def check_evaluation_order(source, call, statement, written_positions, kinds):
    """A call moved before its statement must not write an array the rest of the
    statement reads: Python would read it before the call, or after, by position.
    ``written_positions``: the positions of the arguments the called function writes;
    ``kinds``: the arguments' types (None where unknown).  A scalar argument is never written:
    the called function's ``k += 1`` rebinds its own ``k``."""
    written = {arg.id for position, (arg, kind) in enumerate(zip(call.args, kinds))
               if position in written_positions and isinstance(arg, gast.Name)
               and (kind is None or kind.is_array)}
    inside = {id(node) for node in gast.walk(call)}
    read = {node.id for node in gast.walk(statement)
            if isinstance(node, gast.Name) and isinstance(node.ctx, gast.Load)
            and id(node) not in inside}
    clash = sorted(written & read)
    if clash:
        raise source.error(call, f"'{call.func.id}' writes the array '{clash[0]}', which the "
                                 "rest of this statement reads; adsrc computes calls before "
                                 "their statement, so compute the call into a variable first")


_WHOLE_ARRAY = ("{} returns an array: assign it to a name ('u = ...'), or to the whole of an "
                "array ('u[:] = ...', 'u[:, :] = ...' in 2-D), not to a part of one")
_NO_SHAPE = ("{} returns an array whose shape its rule does not declare: assign it to the "
             "whole of an array, as in 'u[:] = ...' ('u[:, :] = ...' in 2-D), where u is an "
             "argument or a local array from np.zeros/np.empty, or declare the shape, "
             "adsrc.rule(..., shape=...)")


class _Picked(gast.NodeTransformer):
    """``(a, b)[1]`` as ``b``: an element of a rule's ``*args`` in its shape."""

    def visit_Subscript(self, node):
        self.generic_visit(node)
        if isinstance(node.value, gast.Tuple) and isinstance(node.slice, gast.Constant) \
                and isinstance(node.slice.value, int):
            return node.value.elts[node.slice.value]
        return node


def _rule_returns(call):
    return library.by_name(call.func.attr).returns


def _rule_spelled(call):
    return library.spelled(library.by_name(call.func.attr).function)


def _has_slice(subscript):
    """Whether a subscript takes a slice on some axis (``a[1:]``, ``a[i, :]``; not ``a[i, 0]``)."""
    index = subscript.slice
    parts = index.elts if isinstance(index, gast.Tuple) else [index]
    return any(isinstance(part, gast.Slice) for part in parts)


def _before_continue(stmts, again):
    """``stmts`` with a copy of ``again`` before every ``continue`` of the enclosing loop."""
    out = []
    for stmt in stmts:
        if isinstance(stmt, gast.Continue):
            out.extend(copy.deepcopy(again))
        elif isinstance(stmt, gast.If):
            stmt.body = _before_continue(stmt.body, again)
            stmt.orelse = _before_continue(stmt.orelse, again)
        out.append(stmt)
    return out

