"""Tangent of the generated adjoint: Hessian-vector products, forward over reverse.

The reverse transformation turns a kernel into ``__fwd`` and ``__rev`` (see
:mod:`adsrc.transformations.reverse`).  This module differentiates those two functions once
more, in tangent mode, into ``__fwd_dot`` and ``__rev_dot``: every float the adjoint computes
gets a ``_dot`` that carries its derivative in a direction ``v``.  With ``v`` seeding the
tangent of ``x`` and the adjoint seeded with 1 on a scalar result, ``x_bar`` is the gradient and
``x_bar_dot`` is ``H v``.

The tape is differentiated too: a value pushed on the float tape is followed by its tangent, a
copied array by the copy of its tangent, and a frame carries the tangents of its active
values; the reverse sweep pops them in mirror order.  Integer pushes (loop bounds, branch
directions) have no tangent: the control flow of a tangent run is the primal's.

Which values carry a tangent: the primal values activity analysis marked active, every adjoint
(``_bar``) and the adjoint temporaries.  Adjoints of values that do not depend on ``v`` get a
tangent that stays zero: a little extra work, never a wrong one.
"""

import copy
import re

import gast

from adsrc.analyses.effects import rule_call, target_root, walk_statements
from adsrc.frontend.quoting import name, quote
from adsrc.rules import elementary, library
from adsrc.rules.library import RULES
from adsrc.transformations.reverse import TAPE, tape_call
from adsrc.transformations.structured import StructuredRewrite
from adsrc.transformations.tangent import SUFFIX, dot, tangent_of

_ADJOINT_TEMPS = re.compile(r"^(_g|_r|_s\d+)$")
_ALLOCATIONS = ("np.zeros", "np.empty", "np.zeros_like", "np.empty_like")


def dot_name(function_name):
    return function_name + SUFFIX


def _is_copy_position(node):
    return isinstance(node, gast.Name) and re.match(r"^_saved\d+$", node.id) is not None


def _rules_call(node, function):
    """Whether ``node`` calls ``_rules.<function>`` (keep, restore)."""
    return isinstance(node, gast.Call) and isinstance(node.func, gast.Attribute) \
        and isinstance(node.func.value, gast.Name) and node.func.value.id == RULES \
        and node.func.attr == function


def _rule_method(node):
    """``m`` for a call ``_rules.<rule>.m(...)``, else None."""
    if isinstance(node, gast.Call) and isinstance(node.func, gast.Attribute) \
            and isinstance(node.func.value, gast.Attribute) \
            and isinstance(node.func.value.value, gast.Name) \
            and node.func.value.value.id == RULES:
        return node.func.attr
    return None


def _call_name(node):
    if isinstance(node, gast.Call) and isinstance(node.func, gast.Name):
        return node.func.id
    return None


class TangentOfAdjoint(StructuredRewrite):
    """Differentiates the ``__fwd`` and ``__rev`` functions of one specialisation."""

    def __init__(self, spec):
        self.spec = spec
        self.callees = {}       # generated function name -> (callee spec, "fwd" or "rev")
        self.received = {}      # rule reverse's receiver -> how many scalar adjoints it holds

    # which values carry a tangent ---------------------------------------------------------------

    def carries(self, variable):
        env = self.spec.env
        if variable in env:
            return variable in self.spec.active and env[variable].is_float
        if variable.endswith("_bar"):
            base = variable[:-4]
            return base in env and env[base].is_float
        return bool(_ADJOINT_TEMPS.match(variable))

    def _active_leaf(self, leaf):
        return self.carries(target_root(leaf))

    def _fail(self, node, message):
        raise AssertionError(f"adsrc internal error in the tangent of an adjoint: {message}")

    def _tangent_of(self, node):
        """The tangent of an expression: ``sum(partial * leaf_dot)``."""
        return tangent_of(elementary.partials(node, self._active_leaf, self._fail))

    # functions ----------------------------------------------------------------------------------

    def function(self, function, tangent_params):
        """``function`` differentiated; ``tangent_params`` are its parameters that get a
        ``_dot`` parameter, after all the primal ones (and before the tape)."""
        self.register_callees(function)
        body = self.block(function.body)
        params = [arg.id for arg in function.args.args]
        tape = params[-1] == TAPE
        plain = params[:-1] if tape else params
        dots = [param + SUFFIX for param in plain if param in tangent_params]
        args = plain + dots + ([TAPE] if tape else [])
        arguments = gast.arguments(args=[name(arg) for arg in args], posonlyargs=[],
                                   vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None,
                                   defaults=[])
        for arg in arguments.args:
            arg.ctx = gast.Param()
        return gast.FunctionDef(name=dot_name(function.name), args=arguments, body=body,
                                decorator_list=[], returns=None, type_comment=None,
                                type_params=[])

    def register_callees(self, function):
        for node in gast.walk(function):
            callee = _call_name(node)
            if callee is None:
                continue
            for spec in self.spec.generator.specs.values():
                if spec is not None and callee in (spec.fwd_name, spec.rev_name):
                    self.callees[callee] = spec

    # statements ---------------------------------------------------------------------------------

    def simple(self, stmt):
        if isinstance(stmt, gast.Return):
            return [self._return(stmt)]
        if isinstance(stmt, gast.Expr):
            return self._expression_statement(stmt)
        if isinstance(stmt, gast.AugAssign):
            return self._augmented(stmt)
        if isinstance(stmt, gast.Assign):
            return self._assign(stmt)
        return [copy.deepcopy(stmt)]

    def _return(self, stmt):
        values = stmt.value.elts if isinstance(stmt.value, gast.Tuple) else [stmt.value]
        tangents = [self._leaf_tangent(value) for value in values]
        return gast.Return(value=gast.Tuple([copy.deepcopy(v) for v in values] + tangents,
                                            gast.Load()))

    def _leaf_tangent(self, node):
        if isinstance(node, (gast.Name, gast.Subscript)) and self._active_leaf(node):
            return dot(node)
        return gast.Constant(0.0, None)

    def _frame(self, values):
        """A frame's values followed by the tangents of its active ones."""
        return values + [dot(value) for value in values if self.carries(value.id)]

    def _expression_statement(self, stmt):
        value = stmt.value
        if tape_call(value, "push_float"):
            pushed = value.args[0]
            if self._active_leaf(pushed):
                return [copy.deepcopy(stmt)] + quote(f"{TAPE}.push_float(D)", D=dot(pushed))
            return [copy.deepcopy(stmt)]
        if tape_call(value, "push_int") and _is_copy_position(value.args[0]):
            position = value.args[0].id
            return [copy.deepcopy(stmt)] + quote(f"{TAPE}.push_int(D)", D=position + SUFFIX)
        if tape_call(value, "drop_block"):
            array = value.args[0].id
            if self.carries(array):          # the tangent's copy was pushed after the copy
                return quote(f"{TAPE}.drop_block(D)", D=array + SUFFIX) + [copy.deepcopy(stmt)]
            return [copy.deepcopy(stmt)]
        if tape_call(value, "push_frame"):
            values = [copy.deepcopy(v) for v in value.args[0].elts]
            return quote(f"{TAPE}.push_frame(F)", F=gast.Tuple(self._frame(values), gast.Load()))
        if _call_name(value) in self.callees:
            callee = self.callees[_call_name(value)]
            if _call_name(value) == callee.fwd_name and callee.returns:
                # its value and tangent, dropped, are received all the same: compiled code
                # returns them through an array that the caller passes
                dropped = [name(self.spec.namer.fresh("unused"), store=True) for _ in range(2)]
                return [gast.Assign(targets=[gast.Tuple(dropped, gast.Store())],
                                    value=self._callee_call(value), type_comment=None)]
            return [gast.Expr(value=self._callee_call(value))]
        if _rules_call(value, "keep") and self.carries(value.args[1].id):
            return [copy.deepcopy(stmt)] + quote(f"{RULES}.keep({TAPE}, D)",
                                                 D=value.args[1].id + SUFFIX)
        if _rules_call(value, "restore") and self.carries(value.args[1].id):
            return quote(f"{RULES}.restore({TAPE}, D)", D=value.args[1].id + SUFFIX) \
                + [copy.deepcopy(stmt)]
        if _rule_method(value) in ("record_into", "reverse", "reverse_into"):
            return [gast.Expr(value=self._rule_call_dot(value))]
        return [copy.deepcopy(stmt)]

    def _rule_call_dot(self, call):
        """The tangent of a rule's forward or reverse call (see adsrc.runtime.rule_calls):
        ``record_into(_tape, changing, u, args)`` becomes ``record_into_dot(_tape, changing,
        u, u_dot, args, arg_dots)``, ``reverse_into(_tape, u_bar, bars)`` becomes
        ``reverse_into_dot(_tape, u_bar, u_bar_dot, bars, bar_dots)``, and alike for the
        float-valued ``record`` and ``reverse``."""
        method = _rule_method(call)
        args = [copy.deepcopy(arg) for arg in call.args]
        fixed = {"record": 2, "record_into": 3, "reverse": 2, "reverse_into": 2}[method]
        head, rest = args[:fixed], args[fixed:]
        if method in ("record_into", "reverse", "reverse_into"):
            head.append(self._leaf_tangent_or_none(head[-1]))
        dots = [self._leaf_tangent_or_none(arg) for arg in rest]
        func = gast.Attribute(copy.deepcopy(call.func.value), method + "_dot", gast.Load())
        return gast.Call(func=func, args=head + rest + dots, keywords=[])

    def _leaf_tangent_or_none(self, node):
        """The tangent of a rule argument: its ``_dot`` when it carries one; the scalar marker
        ``0.0`` of a reverse call stays a marker; otherwise None."""
        if isinstance(node, gast.Name) and self.carries(node.id):
            return dot(node)
        if isinstance(node, gast.Constant) and node.value == 0.0:
            return copy.deepcopy(node)
        return gast.Constant(None, None)

    def _augmented(self, stmt):
        value = stmt.value
        if isinstance(value, gast.Subscript) and isinstance(value.value, gast.Name) \
                and value.value.id in self.received:
            # a scalar adjoint from a rule's reverse call: its tangent comes after them all
            count = self.received[value.value.id]
            index = gast.Constant(value.slice.value + count, None)
            tangent = gast.Subscript(copy.deepcopy(value.value), index, gast.Load())
            return [gast.AugAssign(target=dot(stmt.target, store=True), op=copy.deepcopy(stmt.op),
                                   value=tangent), copy.deepcopy(stmt)]
        out = []
        if self._active_leaf(stmt.target):
            target = dot(stmt.target, store=True)
            out.append(gast.AugAssign(target=target, op=copy.deepcopy(stmt.op),
                                      value=self._tangent_of(stmt.value)))
        return out + [copy.deepcopy(stmt)]

    def _assign(self, stmt):
        target, value = stmt.targets[0], stmt.value
        if isinstance(target, gast.Tuple):
            return self._tuple_assign(stmt)
        if tape_call(value, "pop_float"):
            if self._active_leaf(target):
                return quote(f"D = {TAPE}.pop_float()", D=dot(target)) + [copy.deepcopy(stmt)]
            return [copy.deepcopy(stmt)]
        if _is_copy_position(target):
            # an array copy's position on the tape (-1: none), and its tangent's beside it
            position = target.id + SUFFIX
            if tape_call(value, "pop_int"):
                return quote(f"D = {TAPE}.pop_int()", D=position) + [copy.deepcopy(stmt)]
            if tape_call(value, "push_block"):
                array = value.args[0].id
                if self.carries(array):
                    return [copy.deepcopy(stmt)] + quote(f"D = {TAPE}.push_block(A)",
                                                         D=position, A=array + SUFFIX)
            return [copy.deepcopy(stmt)] + quote("D = -1", D=position)
        if tape_call(value, "block"):           # the array's name refers to its copy
            if self.carries(target.id):         # and its tangent's to the tangent's copy
                return quote(f"D = {TAPE}.block(S)", D=target.id + SUFFIX,
                             S=value.args[0].id + SUFFIX) + [copy.deepcopy(stmt)]
            return [copy.deepcopy(stmt)]
        if tape_call(value, "saved"):
            if self._active_leaf(target):
                block, index = value.args
                return quote(f"D = {TAPE}.saved(S, I)", D=dot(target), S=block.id + SUFFIX,
                             I=copy.deepcopy(index)) + [copy.deepcopy(stmt)]
            return [copy.deepcopy(stmt)]
        if tape_call(value, "pop_int"):
            return [copy.deepcopy(stmt)]
        method = _rule_method(value)
        if method in ("reverse", "reverse_into"):
            self.received[target.id] = sum(1 for arg in value.args
                                           if isinstance(arg, gast.Constant)
                                           and arg.value == 0.0)
            return [gast.Assign(targets=[copy.deepcopy(target)],
                                value=self._rule_call_dot(value), type_comment=None)]
        if method == "record":
            pair = self.spec.namer.fresh("o")
            return [gast.Assign(targets=[name(pair, store=True)],
                                value=self._rule_call_dot(value), type_comment=None)] \
                + quote(f"T = {pair}[0]\nD = {pair}[1]", T=copy.deepcopy(target),
                        D=dot(target))
        if _call_name(value) in self.callees:
            pair = gast.Tuple([copy.deepcopy(target), dot(target, store=True)], gast.Store())
            return [gast.Assign(targets=[pair], value=self._callee_call(value),
                                type_comment=None)]
        root = target_root(target)
        if not self._active_leaf(target):
            return [copy.deepcopy(stmt)]
        if isinstance(target, gast.Name) and isinstance(value, gast.Call) \
                and gast.unparse(value.func).strip() in _ALLOCATIONS:
            return [copy.deepcopy(stmt)] + quote("D = np.zeros_like(R)", D=root + SUFFIX, R=root)
        tangent = gast.Assign(targets=[dot(target, store=True)], value=self._tangent_of(value),
                              type_comment=None)
        return [tangent, copy.deepcopy(stmt)]

    def _tuple_assign(self, stmt):
        targets = [copy.deepcopy(t) for t in stmt.targets[0].elts]
        value = stmt.value
        if tape_call(value, "pop_frame"):
            unpack = gast.Tuple(self._frame(targets), gast.Store())
            for item in unpack.elts:
                item.ctx = gast.Store()
            return [gast.Assign(targets=[unpack], value=copy.deepcopy(value), type_comment=None)]
        # scalar adjoints returned by a callee's reverse sweep
        receivers = targets + [dot(t, store=True) for t in targets]
        return [gast.Assign(targets=[gast.Tuple(receivers, gast.Store())],
                            value=self._callee_call(value), type_comment=None)]

    def _callee_call(self, call):
        """The call of a callee's ``__fwd``/``__rev`` turned into its ``_dot`` version, with
        the arguments in the order :meth:`function` gives it: all the primal ones (the
        kernel's arguments, then the adjoints and seed of a reverse sweep), then their
        tangents in the same order."""
        callee = self.callees[call.func.id]
        args = [copy.deepcopy(arg) for arg in call.args]
        tape = args.pop()
        primal = args[:len(callee.params)]
        dots = [dot(primal[callee.params.index(param)]) for param in callee.dot_params]
        rest = args[len(callee.params):]          # a reverse sweep's adjoints and seed
        rest_dots = [self._leaf_tangent(arg) for arg in rest]
        return gast.Call(func=name(dot_name(call.func.id)),
                         args=primal + rest + dots + rest_dots + [tape], keywords=[])


def build_second_order(spec, forward, reverse):
    """``__fwd_dot`` and ``__rev_dot`` of a specialisation, from its ``__fwd`` and ``__rev``."""
    for stmt in walk_statements(spec.tree.body):
        call = rule_call(stmt)
        rule = None if call is None else library.by_name(call.func.attr)
        for part, function in (() if rule is None else (
                ("tangent", rule.tangent_function),
                ("backward_tangent", rule.backward_tangent_function))):
            if function is None:
                raise spec.source.error(stmt, f"Hessian-vector products through the derivative "
                                              f"rule of {library.spelled(rule.function)} need "
                                              f"its {part} part, which the rule does not give "
                                              f"(declare it with @<forward>.{part})")
    mode = TangentOfAdjoint(spec)
    tangent_params = set(spec.dot_params)
    fwd = mode.function(forward, tangent_params)
    adjoints = {param + "_bar" for param in spec.bar_params}
    if spec.returns:
        adjoints.add(spec.RETURN + "_bar")
    rev = mode.function(reverse, tangent_params | adjoints)
    return fwd, rev

