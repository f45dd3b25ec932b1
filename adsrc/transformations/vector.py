"""Vector mode: k tangent directions in one sweep over the kernel.

The scalar tangent code (:mod:`adsrc.transformations.tangent`, and the tangent of the adjoint in
:mod:`adsrc.transformations.second_order`) is generated first; this pass rewrites it so that
every tangent carries ``_k`` directions.  Only the tangent part changes, so the primal work (the
kernel's own statements, the tape of an adjoint, the control flow) runs once per sweep, and the
derivative rules stay those of the scalar modes.

Layout, direction innermost (the k values of one element are adjacent, so the inner loop over
directions walks contiguous memory):

* the tangent of a scalar is an array of ``_k`` values, ``s_dot[_d]``;
* the tangent of an array ``a`` is a flat array of ``a.size * _k`` values: element ``a[i]``
  (``a[i, j]``) in direction ``_d`` is ``a_dot[i * _k + _d]`` (``a_dot[(i * a.shape[1] + j) *
  _k + _d]``).  Flat, because the tape copies an array's tangent as one block
  (``_tape.push_block(a_dot)``) exactly as it copies the array.

Each tangent statement ``t_dot = sum(partial * leaf_dot)`` becomes ``_p0 = partial...`` (every
partial computed once, before the loop) and ``for _d in range(_k): t_dot[_d] = ...``.  Then
consecutive loops of a block merge into one, placed after the primal statements between them
that they do not depend on (the body of a kernel loop typically becomes its primal statements,
then one loop over the directions).  A pushed or popped tangent scalar becomes k pushes or pops,
in mirror order.

Calls between generated functions: the tangents a scalar function returns (``return (value,
value_dot)``, the scalar adjoints and their tangents of a reverse sweep) become out-parameters
``_out0_dot, ...`` that the caller passes (its receivers, e.g. ``x_dot``), followed by ``_k``;
the function returns only the primal half.  Tangent scalars are arrays, so they are passed by
reference: a function that writes a tangent-scalar parameter copies it first, as a scalar
parameter would be copied.
"""

import copy
import re

import gast

from adsrc.analyses.types import FLOAT, INT, array
from adsrc.errors import AdsrcError
from adsrc.frontend.quoting import int_literal, is_comment, name, quote, quote_expr, unparse
from adsrc.transformations.reverse import TAPE, tape_call
from adsrc.transformations.structured import StructuredRewrite
from adsrc.transformations.tangent import SUFFIX

DIRECTION = "_d"
COUNT = "_k"
ZERO = "_zero" + SUFFIX         # k zeros, for a tangent argument that is identically zero
VECTOR = array("float64", 1)

_TAPE_POSITION = re.compile(r"^_saved\d+" + SUFFIX + "$")     # an int, not a tangent
_GENERATED = ("__tan", "__fwd_dot", "__rev_dot")
_ALLOCATIONS = ("np.zeros", "np.empty", "np.zeros_like", "np.empty_like")


def _wrapped(index, array, axis):
    """``index`` along ``axis`` of ``array``, a negative one counted from the end (a literal
    that is not negative as it is)."""
    literal = int_literal(index)
    if literal is not None and literal >= 0:
        return copy.deepcopy(index)
    return quote_expr(f"(I + A.shape[{axis}] if I < 0 else I)", I=copy.deepcopy(index), A=array)


class VectorModeUnsupported(AdsrcError):
    """A kernel whose tangent code vector mode cannot carry k directions through (the call of
    a derivative rule, say); callers then run one direction at a time."""


def _generated_call(node):
    return isinstance(node, gast.Call) and isinstance(node.func, gast.Name) \
        and node.func.id.endswith(_GENERATED)


def _written_names(targets):
    """The variables assignment targets write: ``a`` for ``a``, ``a[i]`` and ``(a, b)``."""
    names = set()
    for target in targets:
        if isinstance(target, gast.Tuple):
            names |= _written_names(target.elts)
        elif isinstance(target, gast.Subscript):
            names |= _written_names([target.value])
        elif isinstance(target, gast.Name):
            names.add(target.id)
    return names


def primal_half(names):
    """The primal values of what a scalar-mode function returns (values, then tangents)."""
    return None if names is None else names[:len(names) // 2] or None


def _directions(reverse=False):
    args = f"{COUNT} - 1, -1, -1" if reverse else COUNT
    return quote_expr(f"range({args})")


class Vectorize(StructuredRewrite):
    """Rewrites the generated scalar-tangent functions of one specialisation for k directions.

    ``params`` maps every generated function of the module to its scalar-mode parameter names
    and specialisation, to tell at a call which arguments are tangents."""

    def __init__(self, spec, params):
        self.spec = spec
        self.params = params
        self.receivers = set()      # tangent names not ending in _dot (``_unused0``)
        self.partials = []
        self.outs = 0
        self.passed_out = set()

    # which names are tangents, and their shape ---------------------------------------------

    def is_tangent(self, variable):
        return (variable.endswith(SUFFIX) and not _TAPE_POSITION.match(variable)
                and not variable.endswith(_GENERATED)) or variable in self.receivers

    def _primal(self, variable, spec=None):
        """The kernel variable a tangent differentiates (``x`` for ``x_dot``, ``x_bar_dot``)."""
        spec = spec or self.spec
        base = variable[:-len(SUFFIX)] if variable.endswith(SUFFIX) else variable
        while base not in spec.env and base.endswith("_bar"):
            base = base[:-4]
        return base if base in spec.env else None

    def array_of(self, variable, spec=None):
        """The primal array whose tangent ``variable`` is, or None for a tangent scalar."""
        spec = spec or self.spec
        primal = self._primal(variable, spec)
        return primal if primal is not None and spec.env[primal].is_array else None

    def _mentions_tangent(self, node):
        return any(isinstance(sub, gast.Name) and self.is_tangent(sub.id)
                   for sub in gast.walk(node))

    def _refuse(self, stmt):
        """A tangent statement of a form this pass does not know (from a derivative rule of a
        library call, say): refused, since carrying k directions through it unchanged would
        give wrong derivatives."""
        raise VectorModeUnsupported(f"{self.spec.source.name}: vector mode (stacks of "
                                    f"directions) cannot carry k directions through the "
                                    f"generated statement '{unparse(stmt)}' yet")

    def _check_expression(self, stmt):
        """A tangent statement's value must be a sum of partials times tangents (or a
        constant): no tangent inside a call, no other value."""
        value = stmt.value
        if not self._mentions_tangent(value):
            if not isinstance(value, gast.Constant):
                self._refuse(stmt)
            return
        for node in gast.walk(value):
            if isinstance(node, gast.Call) and self._mentions_tangent(node):
                self._refuse(stmt)

    # expressions ------------------------------------------------------------------------------

    def _element(self, node):
        """A tangent reference inside the loop over directions: ``s_dot[_d]``,
        ``a_dot[i * _k + _d]``."""
        ctx = node.ctx
        if isinstance(node, gast.Name):
            return gast.Subscript(name(node.id), name(DIRECTION), ctx)
        variable = node.value.id
        primal = self.array_of(variable)
        indices = node.slice.elts if isinstance(node.slice, gast.Tuple) else [node.slice]
        # a negative index counts from the end of its own axis: past the first axis it is
        # wrapped before flattening (a[i, -1] is a[i, m - 1], where the flat a_dot[i * m - 1]
        # would be a[i - 1, m - 1]); the flat index wraps a negative first index as it should
        flat = copy.deepcopy(indices[0])
        for axis, index in enumerate(indices[1:], start=1):
            flat = quote_expr(f"F * A.shape[{axis}] + I", F=flat, A=primal,
                              I=_wrapped(index, primal, axis))
        return gast.Subscript(name(variable), quote_expr(f"F * {COUNT} + {DIRECTION}", F=flat),
                              ctx)

    def _per_direction(self, node):
        """``node`` with every tangent reference at direction ``_d``."""
        vectorize = self

        class Elements(gast.NodeTransformer):
            def visit_Name(self, sub):
                return vectorize._element(sub) if vectorize.is_tangent(sub.id) else sub

            def visit_Subscript(self, sub):
                if isinstance(sub.value, gast.Name) and vectorize.is_tangent(sub.value.id):
                    return vectorize._element(sub)
                return self.generic_visit(sub)

        return Elements().visit(copy.deepcopy(node))

    def _hoist(self, node, out):
        """``node`` with its partial derivatives (the largest subexpressions without a
        tangent) moved into ``_p`` temporaries assigned in ``out``: computed once, not once
        per direction."""
        if not self._mentions_tangent(node):
            if isinstance(node, (gast.Name, gast.Constant)):
                return node
            temp = f"_p{len(self.partials)}"
            self.partials.append(temp)
            out += quote("T = V", T=temp, V=node)
            return name(temp)
        if isinstance(node, (gast.BinOp, gast.UnaryOp)):
            for field in ("left", "right", "operand"):
                if hasattr(node, field):
                    setattr(node, field, self._hoist(getattr(node, field), out))
        return node      # a tangent reference (its index stays), or a form left whole

    def _loop(self, stmt, reverse=False, hoist=True):
        """``for _d in range(_k): stmt`` at each direction, after its hoisted partials (none
        for a value read from the tape, which differs per direction)."""
        stmt = copy.deepcopy(stmt)
        before = []
        if hoist and isinstance(stmt, (gast.Assign, gast.AugAssign)):
            stmt.value = self._hoist(stmt.value, before)
        body = [self._per_direction(stmt)]
        return before + [gast.For(target=name(DIRECTION, store=True),
                                  iter=_directions(reverse), body=body, orelse=[],
                                  type_comment=None)]

    # statements -------------------------------------------------------------------------------

    def block(self, stmts):
        return self._fused(super().block(stmts))

    def _fused(self, stmts):
        """``stmts`` with consecutive loops over the directions merged into one, after the
        primal statements between them that the loops do not depend on.

        One loop per tangent statement meant, per element of a kernel loop, several passes
        over the k directions, each reloading what the previous one wrote.  Merged, with the
        Cython backend's tangent scalars in C memory, a direction's values can stay in
        registers from one statement to the next: the vector sweep of the membrane energy of
        benchmarks/hvp.py (n = 10^5, k = 8) takes 28% less time, against 4-6% for either
        change alone.  Merging keeps each direction's statements in their order, which is all
        that matters, since a tangent statement reads and writes one direction only."""
        out, pending, start = [], None, 0

        def flush():
            # before the comments that introduce the statement that stopped the merging
            at = len(out)
            while at > start and is_comment(out[at - 1]):
                at -= 1
            out.insert(at, pending)

        for stmt in stmts:
            if self._fusible(stmt):
                if pending is None:
                    pending, start = stmt, len(out)
                else:
                    pending.body += stmt.body
                continue
            if pending is not None and not is_comment(stmt) \
                    and not self._independent(stmt, pending):
                flush()
                pending = None
            out.append(stmt)
        if pending is not None:
            flush()
        return out

    @staticmethod
    def _fusible(stmt):
        """A loop over the directions of tangent assignments only (no tape, no call)."""
        return isinstance(stmt, gast.For) and isinstance(stmt.target, gast.Name) \
            and stmt.target.id == DIRECTION and unparse(stmt.iter) == f"range({COUNT})" \
            and all(isinstance(s, (gast.Assign, gast.AugAssign)) for s in stmt.body) \
            and not any(isinstance(node, gast.Call) for s in stmt.body for node in gast.walk(s))

    def _independent(self, stmt, loop):
        """Whether the primal statement ``stmt`` may run before ``loop``: it writes nothing the
        loop reads (a partial, a scalar, an index array) and calls no generated function,
        which could write its array arguments."""
        if not isinstance(stmt, (gast.Assign, gast.AugAssign)) or self._mentions_tangent(stmt) \
                or any(_generated_call(node) for node in gast.walk(stmt)):
            return False
        targets = stmt.targets if isinstance(stmt, gast.Assign) else [stmt.target]
        read = {node.id for node in gast.walk(loop) if isinstance(node, gast.Name)}
        return not _written_names(targets) & read

    def simple(self, stmt):
        if isinstance(stmt, gast.Return):
            return self._return(stmt)
        if isinstance(stmt, gast.Expr):
            return self._expression_statement(stmt)
        if isinstance(stmt, gast.Assign) and isinstance(stmt.targets[0], gast.Tuple):
            return self._tuple_assign(stmt)
        if isinstance(stmt, (gast.Assign, gast.AugAssign)):
            target = stmt.target if isinstance(stmt, gast.AugAssign) else stmt.targets[0]
            if self._mentions_tangent(target):
                return self._tangent_assign(stmt, target)
        value = getattr(stmt, "value", None)
        if value is not None and self._mentions_tangent(stmt) \
                and not tape_call(value, "push_block", "drop_block"):
            self._refuse(stmt)
        return [copy.deepcopy(stmt)]

    def _tangent_assign(self, stmt, target):
        value = stmt.value
        if tape_call(value, "pop_float"):
            return self._loop(stmt, reverse=True, hoist=False)
        if tape_call(value, "block"):
            return [copy.deepcopy(stmt)]        # the tangent's flat copy, as a whole
        if tape_call(value, "saved"):
            # the tangent's copy is flat too: element i in direction _d at i * _k + _d
            stmt = copy.deepcopy(stmt)
            stmt.value.args[1] = quote_expr(f"I * {COUNT} + {DIRECTION}", I=stmt.value.args[1])
            return self._loop(stmt, hoist=False)
        if isinstance(target, gast.Name) and isinstance(value, gast.Call) \
                and gast.unparse(value.func).strip() in _ALLOCATIONS:
            return quote(f"T = np.zeros({self._size(target.id)} * {COUNT})", T=target.id,
                         P=self.array_of(target.id))
        self._check_expression(stmt)
        return self._loop(stmt)

    def _size(self, variable):
        """The number of elements of the array whose tangent is ``variable``, as a template
        whose placeholder ``P`` is that array (a template naming it could capture it: an
        array named ``T``)."""
        ndim = self.spec.env[self.array_of(variable)].ndim
        return " * ".join(f"P.shape[{axis}]" for axis in range(ndim))

    def _expression_statement(self, stmt):
        value = stmt.value
        if tape_call(value, "push_float") and self._mentions_tangent(value):
            return self._loop(stmt)
        if tape_call(value, "push_frame"):
            primal, tangents = self._split_frame(value.args[0].elts)
            frame = quote(f"{TAPE}.push_frame(F)", F=gast.Tuple(primal, gast.Load()))
            return frame + [s for t in tangents
                            for s in self._loop(quote(f"{TAPE}.push_float(T)", T=t)[0],
                                                hoist=False)]
        if _generated_call(value):
            return [gast.Expr(value=self._call(value, []))]
        if self._mentions_tangent(value) and not tape_call(value, "drop_block"):
            self._refuse(stmt)
        return [copy.deepcopy(stmt)]

    def _split_frame(self, values):
        """A frame's entries, and its tangent scalars (pushed as floats after the frame: an
        array of k values changes in place, so it cannot be kept by reference)."""
        primal = [copy.deepcopy(v) for v in values
                  if not (self.is_tangent(v.id) and self.array_of(v.id) is None)]
        tangents = [copy.deepcopy(v) for v in values
                    if self.is_tangent(v.id) and self.array_of(v.id) is None]
        return primal, tangents

    def _tuple_assign(self, stmt):
        targets, value = stmt.targets[0].elts, stmt.value
        if tape_call(value, "pop_frame"):
            primal, tangents = self._split_frame(targets)
            pops = [s for t in reversed(tangents)
                    for s in self._loop(quote(f"T = {TAPE}.pop_float()", T=t)[0],
                                        reverse=True, hoist=False)]
            for item in primal:
                item.ctx = gast.Store()
            return pops + [gast.Assign(targets=[gast.Tuple(primal, gast.Store())],
                                       value=copy.deepcopy(value), type_comment=None)]
        if not _generated_call(value):
            self._refuse(stmt)
        # a generated call: primal receivers, then tangent receivers (out-parameters now)
        half = len(targets) // 2
        tangents = [target.id for target in targets[half:]]
        self.receivers.update(tangents)
        primal = [copy.deepcopy(target) for target in targets[:half]]
        return [gast.Assign(targets=[gast.Tuple(primal, gast.Store())],
                            value=self._call(value, tangents), type_comment=None)]

    def _call(self, call, outs):
        """A generated call: zero tangents as ``_zero_dot``, then the out-parameters and
        ``_k`` before the tape."""
        params, callee = self.params[call.func.id]
        args = []
        for param, arg in zip(params, call.args):
            if self.is_tangent(param) and isinstance(arg, gast.Constant):
                if self.array_of(param, callee) is not None:
                    raise AssertionError(f"adsrc internal error: zero tangent array for {param}")
                arg = name(ZERO)
            elif self.is_tangent(param) and not isinstance(arg, gast.Name):
                raise AssertionError(f"adsrc internal error: tangent argument {param} is "
                                     f"{gast.unparse(arg).strip()}")
            args.append(copy.deepcopy(arg))
        self.passed_out.update(outs)
        tape = [args.pop()] if args and isinstance(args[-1], gast.Name) \
            and args[-1].id == TAPE else []
        extra = [name(out) for out in outs] + [name(COUNT)]
        return gast.Call(func=name(call.func.id), args=args + extra + tape, keywords=[])

    def _return(self, stmt):
        values = stmt.value.elts
        half = len(values) // 2
        out = []
        for position, tangent in enumerate(values[half:]):
            out += self._loop(quote(f"_out{position}{SUFFIX} = T", T=tangent)[0])
        self.outs = half
        return out + [gast.Return(value=gast.Tuple([copy.deepcopy(v) for v in values[:half]],
                                                   gast.Load()))]

    # functions --------------------------------------------------------------------------------

    def function(self, function):
        """The vector version of a scalar-mode generated function."""
        body = self.block(function.body)
        params = [arg.id for arg in function.args.args]
        tape = params[-1:] if params[-1:] == [TAPE] else []
        plain = params[:len(params) - len(tape)]
        outs = [f"_out{position}{SUFFIX}" for position in range(self.outs)]
        args = plain + outs + [COUNT] + tape
        written = set(self.passed_out)
        for node in gast.walk(gast.Module(body=body, type_ignores=[])):
            if isinstance(node, gast.Subscript) and isinstance(node.ctx, gast.Store) \
                    and isinstance(node.value, gast.Name):
                written.add(node.value.id)
        scalars = sorted({node.id for node in gast.walk(gast.Module(body=body, type_ignores=[]))
                          if isinstance(node, gast.Name) and self.is_tangent(node.id)
                          and self.array_of(node.id) is None})
        prologue = []
        for variable in scalars:
            if variable in outs:
                continue
            if variable not in plain:
                prologue += quote(f"V = np.zeros({COUNT})", V=variable)
            elif variable in written:        # a copy, as a scalar argument would be
                prologue += quote("V = np.copy(V)", V=variable)
        arguments = gast.arguments(args=[name(arg) for arg in args], posonlyargs=[],
                                   vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None,
                                   defaults=[])
        for arg in arguments.args:
            arg.ctx = gast.Param()
        vector = gast.FunctionDef(name=function.name, args=arguments, body=prologue + body,
                                  decorator_list=[], returns=None, type_comment=None,
                                  type_params=[])
        # the C types of the names this pass introduced, for the Cython backend
        tangents = {node.id for node in gast.walk(vector)
                    if isinstance(node, gast.Name) and self.is_tangent(node.id)}
        vector.adsrc_types = {**{t: VECTOR for t in tangents}, **{p: FLOAT for p in self.partials},
                              DIRECTION: INT, COUNT: INT}
        # the tangent scalars (k values each), which the Cython backend keeps in C memory
        vector.adsrc_directions = frozenset(t for t in tangents if self.array_of(t) is None)
        return vector


def vectorize(functions):
    """The vector versions of ``functions``: ``[(spec, scalar FunctionDef), ...]``, every
    generated function of one module."""
    params = {function.name: ([arg.id for arg in function.args.args], spec)
              for spec, function in functions}
    return [(spec, Vectorize(spec, params).function(function)) for spec, function in functions]
