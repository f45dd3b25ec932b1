"""Tangent (forward) mode: one function that runs the primal and carries directional derivatives.

``<name>__tan(args..., <active>_dot...)`` runs the kernel statement by statement; before each
active assignment it sets the target's tangent ``t_dot`` to the sum over the statement's active
leaves of ``partial * leaf_dot``, with the same partial derivatives the reverse mode uses
(:mod:`adsrc.rules.elementary`), so both modes differentiate every construct alike.  Nothing is
recorded: a tangent needs no tape.

Activity is the reverse mode's (:mod:`adsrc.analyses.activity`): inactive variables get no
tangent.  The ``_dot`` of an array argument holds the direction on entry; for a mutated array it
holds the tangent of the final value on return, and it is left as it was for the others.  A
kernel returning a value returns ``(value, value_dot)``.
"""

import copy

import gast

from adsrc.analyses.effects import rule_call, target_root, user_call
from adsrc.analyses.needs import RESULT
from adsrc.frontend.quoting import const, name, quote, with_quoted_lines
from adsrc.rules import elementary
from adsrc.transformations import rule_calls

SUFFIX = "_dot"


def dot(node, store=False):
    """The tangent of a name or of an array element (as a store target with ``store``)."""
    ctx = gast.Store() if store else gast.Load()
    if isinstance(node, gast.Name):
        return name(node.id + SUFFIX, store=store)
    return gast.Subscript(name(node.value.id + SUFFIX), copy.deepcopy(node.slice), ctx)


def _sum(terms):
    if not terms:
        return const(0.0)
    total = terms[0]
    for term in terms[1:]:
        if isinstance(term, gast.UnaryOp) and isinstance(term.op, gast.USub):
            total = gast.BinOp(total, gast.Sub(), term.operand)
        else:
            total = gast.BinOp(total, gast.Add(), term)
    return total


def tangent_of(found):
    """``sum(partial * leaf_dot)`` over the partials of
    :func:`adsrc.rules.elementary.partials`."""
    return _sum([_guarded_term(*partial) for partial in found])


def _guarded_term(leaf, partial, guard):
    """``partial * leaf_dot``, or ``(partial * leaf_dot if guard else 0.0)`` for a leaf read
    in a branch of ``a if c else b``: ``leaf_dot`` is read only where the leaf was."""
    term = _term(leaf, partial)
    return term if guard is None else gast.IfExp(copy.deepcopy(guard), term, const(0.0))


def _term(leaf, partial):
    """``partial * leaf_dot``, with the multiplier 1 and a negation kept readable."""
    if partial is elementary.ONE:
        return dot(leaf)
    if isinstance(partial, gast.UnaryOp) and isinstance(partial.op, gast.USub):
        inner = partial.operand
        if isinstance(inner, gast.Constant) and inner.value == 1.0:
            return gast.UnaryOp(gast.USub(), dot(leaf))
        return gast.UnaryOp(gast.USub(), gast.BinOp(inner, gast.Mult(), dot(leaf)))
    return gast.BinOp(partial, gast.Mult(), dot(leaf))


class TangentMode:
    """Generates ``__tan`` for one specialisation (see adsrc.pipeline)."""

    def __init__(self, spec):
        self.spec = spec
        self.source = spec.source
        self.env = spec.env
        self.active = spec.active

    def _is_active_leaf(self, leaf):
        return target_root(leaf) in self.active

    def _fail(self, node, message):
        raise self.source.error(node, message)

    def statements(self, stmts):
        """The tangent code of ``stmts``, each statement's after a comment quoting its line
        (every statement's: a failed check of an inactive one is traced to its line too)."""
        return with_quoted_lines((self.source.quoted_line(stmt), self._statement(stmt))
                                 for stmt in stmts)

    def _statement(self, stmt):
        if rule_call(stmt) is not None:
            return rule_calls.tangent(self.spec, stmt, self.spec.namer, SUFFIX)
        if isinstance(stmt, (gast.Assign, gast.Expr)) \
                and user_call(stmt, self.spec.user_functions) is not None:
            return self._call(stmt)
        if isinstance(stmt, gast.Assign):
            return self._assign(stmt)
        if isinstance(stmt, (gast.For, gast.While)):
            loop = copy.copy(stmt)
            loop.body = self.statements(stmt.body) or [gast.Pass()]
            return [copy.deepcopy(loop)]
        if isinstance(stmt, gast.If):
            return [gast.If(test=copy.deepcopy(stmt.test),
                            body=self.statements(stmt.body) or [gast.Pass()],
                            orelse=self.statements(stmt.orelse))]
        if isinstance(stmt, gast.Return):
            value = stmt.value.id
            tangent = name(value + SUFFIX) if value in self.active else const(0.0)
            return [gast.Return(value=gast.Tuple([name(value), tangent], gast.Load()))]
        return [copy.deepcopy(stmt)]

    def _assign(self, stmt):
        target, value = stmt.targets[0], stmt.value
        root = target_root(target)
        if root not in self.active:
            return [copy.deepcopy(stmt)]
        if self.env[root].is_array and isinstance(target, gast.Name):
            # allocation of a local array: its values are constants
            return [copy.deepcopy(stmt)] + quote("D = np.zeros_like(R)", D=root + SUFFIX, R=root)
        uses_result = elementary.uses_result(value, self._is_active_leaf, self._fail)
        found = elementary.partials(value, self._is_active_leaf, self._fail,
                                    name(RESULT) if uses_result else None)
        set_tangent = gast.Assign(targets=[dot(target, store=True)], value=tangent_of(found),
                                  type_comment=None)
        if uses_result:
            # the partials read the new value: compute it first, store it last
            return quote(f"{RESULT} = V", V=copy.deepcopy(value)) + [set_tangent] \
                + quote(f"T = {RESULT}", T=copy.deepcopy(target))
        # the partials read the old values: the tangent goes first
        return [set_tangent, copy.deepcopy(stmt)]

    def _call(self, stmt):
        call = user_call(stmt, self.spec.user_functions)
        callee = self.spec.callee(stmt)
        args = [copy.deepcopy(arg) for arg in call.args]
        dots = [name(call.args[callee.params.index(param)].id + SUFFIX)
                for param in callee.dot_params]
        tan_call = gast.Call(func=name(callee.tan_name), args=args + dots, keywords=[])
        if isinstance(stmt, gast.Expr) and not callee.returns:
            return [gast.Expr(value=tan_call)]
        if isinstance(stmt, gast.Expr):
            # a value dropped is received all the same: compiled code returns the value and
            # its tangent through an array that the caller passes
            target, tangent = self.spec.namer.fresh("unused"), self.spec.namer.fresh("unused")
        else:
            target = stmt.targets[0].id
            tangent = target + SUFFIX if target in self.active \
                else self.spec.namer.fresh("unused")
        pair = gast.Tuple([name(target, store=True), name(tangent, store=True)], gast.Store())
        return [gast.Assign(targets=[pair], value=tan_call, type_comment=None)]


def build_tangent(spec):
    """The ``__tan`` function definition of a specialisation."""
    mode = TangentMode(spec)
    body = mode.statements(spec.tree.body)
    inits = []
    for local in sorted(spec.active - set(spec.params) - {spec.RETURN}):
        if not spec.env[local].is_array:
            inits += quote(f"{local}{SUFFIX} = 0.0")
    params = list(spec.params) + [param + SUFFIX for param in spec.dot_params]
    arguments = gast.arguments(args=[name(arg) for arg in params], posonlyargs=[], vararg=None,
                               kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[])
    for arg in arguments.args:
        arg.ctx = gast.Param()
    return gast.FunctionDef(name=spec.tan_name, args=arguments, body=inits + body or [gast.Pass()],
                            decorator_list=[], returns=None, type_comment=None, type_params=[])
