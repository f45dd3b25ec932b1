"""Generated code for library calls with derivative rules, in every mode.

A normalised rule call is ``s = _rules.f(args)`` (a float result) or ``u[:] = _rules.f(args)``
(an array result written into the whole of ``u``).  The calls below go to
:mod:`adsrc.runtime.rule_calls`:

* primal: ``s = _rules.f(args)`` or ``_rules.f.into(u, args)``;
* forward sweep: ``_rules.f.record(_tape, changing, args)`` / ``record_into(...)`` run the
  rule's forward part and push what it saved; ``changing`` lists the positions of the array
  arguments that may be overwritten before the reverse sweep, whose saved values are copied;
* reverse sweep: ``_rules.f.reverse(_tape, s_bar, bars)`` / ``reverse_into(_tape, u_bar, bars)``
  add the adjoints into the array bars and return those of the float scalar arguments (marked
  ``0.0`` in ``bars``; ``None`` marks an argument without adjoint);
* tangent: ``_rules.f.tangent(args, dots)`` / ``tangent_into(u, u_dot, args, dots)``.

The old value of an overwritten ``u`` is kept by ``_rules.keep`` and put back by
``_rules.restore`` when the to-be-recorded analysis asks for it.
"""

import copy

import gast

from adsrc.analyses.effects import rule_call
from adsrc.frontend.quoting import const, name, quote
from adsrc.rules import library
from adsrc.rules.library import RULES


def stored_array(stmt):
    """The array an array-valued rule call is written into, or None for a float result."""
    target = stmt.targets[0]
    return target.value.id if isinstance(target, gast.Subscript) else None


def _method(call, method, args):
    func = gast.Attribute(copy.deepcopy(call.func), method, gast.Load())
    return gast.Call(func=func, args=args, keywords=[])


def _args(call):
    return [copy.deepcopy(arg) for arg in call.args]


def primal(stmt):
    """The statement that only computes the value."""
    out = stored_array(stmt)
    if out is None:
        return [copy.deepcopy(stmt)]
    call = rule_call(stmt)
    return [gast.Expr(value=_method(call, "into", [name(out)] + _args(call)))]


def changing_positions(spec, call):
    """Positions of the array arguments whose memory may change between the forward and the
    reverse sweep: the kernel writes them somewhere, or (in a called kernel, whose caller may
    write them) they are parameters."""
    written = spec.effects.written_anywhere(spec.tree.body)
    positions = []
    for position, arg in enumerate(call.args):
        if isinstance(arg, gast.Name) and spec.env[arg.id].is_array and (
                arg.id in written or (spec.key.restore and arg.id in spec.params)):
            positions.append(position)
    return positions


def forward(spec, stmt, tape, keep_array):
    """The forward sweep of a rule call: record it when its result is active; with
    ``keep_array``, first keep the old value of the array it overwrites."""
    call = rule_call(stmt)
    out = stored_array(stmt)
    statements = []
    if keep_array:
        statements += quote(f"{RULES}.keep({tape}, U)", U=out)
    root = out or stmt.targets[0].id
    if root not in spec.active:
        return statements + primal(stmt)
    changing = gast.Tuple([const(p) for p in changing_positions(spec, call)], gast.Load())
    if out is None:
        record = _method(call, "record", [name(tape), changing] + _args(call))
        return statements + [gast.Assign(targets=[copy.deepcopy(stmt.targets[0])], value=record,
                                         type_comment=None)]
    record = _method(call, "record_into", [name(tape), changing, name(out)] + _args(call))
    return statements + [gast.Expr(value=record)]


def reverse(spec, stmt, tape, namer, restore_array):
    """The reverse sweep of a rule call: adjoints of its arguments, then, with
    ``restore_array``, the old value of the array it overwrote."""
    call = rule_call(stmt)
    out = stored_array(stmt)
    root = out or stmt.targets[0].id
    statements = []
    if root in spec.active:
        bars, scalars = [], []
        for arg in call.args:
            kind = spec.env.get(arg.id) if isinstance(arg, gast.Name) else None
            if kind is None or arg.id not in spec.active:
                bars.append(const(None))
            elif kind.is_array:
                bars.append(name(arg.id + "_bar"))
            else:
                bars.append(const(0.0))
                scalars.append(arg.id)
        seed = name(root + "_bar")
        method = "reverse" if out is None else "reverse_into"
        backward = _method(call, method, [name(tape), seed] + bars)
        if scalars:
            received = namer.fresh("o")
            statements.append(gast.Assign(targets=[name(received, store=True)], value=backward,
                                          type_comment=None))
        else:
            statements.append(gast.Expr(value=backward))
        if out is None:
            statements += quote("B = 0.0", B=root + "_bar")
        for position, scalar in enumerate(scalars):
            statements += quote(f"B += {received}[{position}]", B=scalar + "_bar")
    if restore_array:
        statements += quote(f"{RULES}.restore({tape}, U)", U=out)
    return statements


def tangent(spec, stmt, namer, suffix):
    """The tangent of a rule call: the value and its tangent in one call of the rule."""
    call = rule_call(stmt)
    out = stored_array(stmt)
    root = out or stmt.targets[0].id
    if root not in spec.active:
        return primal(stmt)
    rule = library.by_name(call.func.attr)
    if rule.tangent_function is None:       # found before anything runs, not half-way
        raise spec.source.error(stmt, f"forward mode through the derivative rule of "
                                      f"{library.spelled(rule.function)} needs its tangent "
                                      "part, which the rule does not give (declare it with "
                                      "@<forward>.tangent)")
    dots = []
    for arg in call.args:
        active = isinstance(arg, gast.Name) and arg.id in spec.active
        dots.append(name(arg.id + suffix) if active else const(None))
    if out is not None:
        both = _method(call, "tangent_into", [name(out), name(out + suffix)] + _args(call) + dots)
        return [gast.Expr(value=both)]
    received = namer.fresh("o")
    both = _method(call, "tangent", _args(call) + dots)
    return [gast.Assign(targets=[name(received, store=True)], value=both, type_comment=None)] \
        + quote(f"T = {received}[0]\nD = {received}[1]", T=root, D=root + suffix)
