"""Lowering of whole-array statements and reductions into element loops.

``x[:] = x[:] + alpha * dinv * r`` becomes ``for _i0 in range(x.shape[0]): x[_i0] = x[_i0] + ...``;
``u[1:-1] = 0.5 * (w[:-2] + w[2:])`` maps each slice to ``start + step * _i0``; ``s = np.dot(a, b)``
becomes an accumulation loop; ``y = np.copy(x)`` becomes an allocation and a copy loop, and a
local array bound again (``r = r - alpha * Ap`` on every trip) a copy loop into the array it has,
allocated once before the top-level statement holding its first binding.  A dense
matrix-vector product in an element-wise expression (``r[:] = b - A @ x``) becomes, at each element
``i``, a loop summing ``A[i, j] * x[j]`` into a temporary just before the element's assignment, so
it needs no array of its own, unless the statement asks for each element more than once (``B @ x``
in ``A @ (B @ x)``): the product is then computed once, before, into a local array.  A 1-D
operand of a 2-D statement is broadcast as in NumPy: it is read with the statement's last counter
(``A * d`` at ``[i, j]`` reads ``d[j]``), or, with a new axis, with the other one (``d[:, None]``
reads ``d[i]``).  After this pass every derivative
is a derivative of a scalar statement, so the reverse transformation has one case to handle,
and the loops are what the compiled backend wants anyway.

Slices must have a constant step (negative ones run down from the last element, ``x[::-1]``);
their bounds are taken as Python takes them, constant or known only at run time: a negative bound
counts from the end, and one past either end is clipped (see :func:`_slice_bound`).  Operands of
different extents are caught by an ``assert`` emitted before the loop.
"""

import copy
import math

import gast

from adsrc.analyses.effects import is_rule_call, user_call, walk_statements
from adsrc.frontend.intrinsics import (CONSTANT_ARRAYS, CUMULATIVE_CALLS, READ_BY_ELEMENT,
                                       REDUCTION_CALLS, along_axis, matrix_vector)
from adsrc.frontend.quoting import (const, full_slice, int_literal, located, name, new_axis,
                                    quote, quote_expr, substitute)
from adsrc.frontend.unbound_reads import flags_in, only_when_bound

ALLOCATIONS = ("np.zeros", "np.empty", "np.zeros_like", "np.empty_like")
#: a running reduction's start and how its running value ``S`` takes the next element ``E``
_RUNNING = {"np.cumsum": (0.0, "S = S + E"), "np.cumprod": (1.0, "S = S * E")}
#: the calls whose element is an index expression of their arguments (:func:`_indexed_read`)
INDEXED_READS = ("np.diag", "np.roll", "np.diff") \
    + tuple("np." + function for function in CONSTANT_ARRAYS)


def _stores(tree):
    """{name: how many times ``tree`` binds it}."""
    stores = {}
    for node in gast.walk(tree):
        if isinstance(node, gast.Name) and isinstance(node.ctx, gast.Store):
            stores[node.id] = stores.get(node.id, 0) + 1
    return stores


def _callee(node):
    return gast.unparse(node.func).strip() if isinstance(node, gast.Call) else None


def _reduced_axis(node):
    """The axis, 0 or 1, of ``np.sum(u, axis)`` (np.mean, np.max, np.min), else None."""
    return int_literal(node.args[1]) % 2 if along_axis(node) else None


def _indexed_read(call, counters):
    """The element at ``counters`` of a call in :data:`INDEXED_READS`: ``A[i, i]`` of
    np.diag(A), ``x[(i - k) % n]`` of np.roll(x, k), ``x[i + 1] - x[i]`` of np.diff(x),
    ``1.0 if i == j else 0.0`` of np.eye, the fill value of np.full and np.full_like (its
    derivative goes to what it reads), 1.0 of np.ones and np.ones_like."""
    func, i = _callee(call), name(counters[0])
    if func == "np.diag":
        return quote_expr("A[I, I]", A=call.args[0], I=i)
    if func == "np.roll":
        return quote_expr("A[(I - K) % A.shape[0]]", A=call.args[0], I=i, K=call.args[1])
    if func == "np.diff":
        return quote_expr("A[I + 1] - A[I]", A=call.args[0], I=i)
    if func == "np.eye":
        return quote_expr("1.0 if I == J else 0.0", I=i, J=name(counters[1]))
    if func in ("np.full", "np.full_like"):
        return call.args[1]
    return const(1.0)


def _new_axis_of_expression(node):
    """Whether ``node`` is ``e[:, None]`` or ``e[None, :]`` of a 1-D expression ``e`` (not a
    name: ``np.sum(E, axis=1)[:, None]``, and keepdims=True, which the frontend spells so)."""
    return isinstance(node, gast.Subscript) and not isinstance(node.value, gast.Name) \
        and isinstance(node.slice, gast.Tuple) and any(new_axis(part)
                                                       for part in node.slice.elts)


def _shape_extents(shape, ndim):
    """The extents a shape argument gives (``(n, m)``, ``b.shape``, ``n``) of an array of
    ``ndim`` dimensions."""
    if isinstance(shape, gast.Tuple):
        return list(shape.elts)
    if isinstance(shape, gast.Attribute):          # b.shape
        return [quote_expr(f"S[{dim}]", S=shape) for dim in range(ndim)]
    return [shape]                                  # np.zeros(n)


def _product_length(form):
    """The length of ``M @ v`` (M's rows) or ``M.T @ v`` (M's columns), for a
    :func:`~adsrc.frontend.intrinsics.matrix_vector` form."""
    matrix, transposed, _ = form
    return quote_expr("M.shape[D]", M=matrix, D=const(1 if transposed else 0))


#: an axis a subscript adds (``x[:, None]``): it takes no index, and its extent is the others'
_NEW_AXIS = "new axis"


class _Lowering:
    """What lowering knows of the element-wise statement or reduction whose elements it is
    computing: the statement, the counters of all the loops around the element being computed
    (the statement's, then those of the sums it is inside), and whether the element is
    computed only in a branch of a conditional expression.

    An element asked for at counters that leave out one of the loops around it is asked for
    again on every trip of that loop: ``(B @ x)[j]`` in ``A @ (B @ x)`` once per row of A."""

    def __init__(self, stmt, counters):
        self.stmt = stmt
        self.loops = list(counters)
        self.in_a_branch = False

    def asks_again(self, counters):
        return not set(self.loops) <= set(counters)


class _Axis:
    """One sliced axis of an array operand: element index = start + step * counter."""

    def __init__(self, start, step, count):
        self.start, self.step, self.count = start, step, count

    def index(self, counter):
        index = name(counter)
        if self.step != 1:
            index = quote_expr("STEP * I", STEP=const(self.step), I=index)
        if not (isinstance(self.start, gast.Constant) and self.start.value == 0):
            index = quote_expr("START + I", START=self.start, I=index)
        return index


def _reads_element_of(node, array):
    """Whether ``node`` is a subscript of the array named as ``array`` is."""
    return isinstance(node, gast.Subscript) and isinstance(node.value, gast.Name) \
        and node.value.id == array.id


def _is_extent(count):
    """Whether a count is an array's extent ``a.shape[d]``, never negative."""
    return isinstance(count, gast.Subscript) and isinstance(count.value, gast.Attribute) \
        and count.value.attr == "shape"


def _never_negative(extent):
    """Whether an allocation's extent is spelled never negative: a constant of at least 0,
    an array's extent, ``len(a)``, ``max(e, 0)``."""
    if isinstance(extent, gast.Constant):
        return extent.value >= 0
    if _callee(extent) == "max":
        return any(isinstance(arg, gast.Constant) and arg.value == 0 for arg in extent.args)
    return _is_extent(extent) or _callee(extent) == "len"


def _at_least_zero(extent):
    """``max(extent, 0)``, unless it is spelled never negative."""
    return extent if _never_negative(extent) else quote_expr("max(E, 0)", E=extent)


def _map_extents(shape, change):
    """A shape argument (``(n, m)``, ``n``) with ``change`` applied to its extents; ``b.shape``
    as it is."""
    if isinstance(shape, gast.Tuple):
        return gast.copy_location(gast.Tuple(elts=[change(extent) for extent in shape.elts],
                                             ctx=gast.Load()), shape)
    if isinstance(shape, gast.Attribute):
        return shape
    return change(shape)


def _slice_bound(value, extent, default, below, above):
    """A slice bound ``value`` as an index of an axis of ``extent`` elements, as Python takes
    it: ``default`` when absent; a negative one counts from the end, then passes through
    ``below`` (a template of ``B``, the bound, and ``N``, the extent); a non-negative one
    through ``above``.  A constant takes its branch now; a bound known only at run time both,
    by its sign.  (Where a count at or below zero already makes the loop empty, a template is
    plain ``B``.)"""
    if value is None:
        return default
    if isinstance(value, gast.UnaryOp) and isinstance(value.op, gast.USub) \
            and isinstance(value.operand, gast.Constant):
        value = const(-value.operand.value)
    counted = quote_expr("N + B", N=extent, B=value)
    if isinstance(value, gast.Constant):
        if value.value < 0:
            return quote_expr(below, B=counted, N=extent)
        return value if above == "B" or value.value == 0 \
            else quote_expr(above, B=value, N=extent)
    return gast.IfExp(quote_expr("V < 0", V=value), quote_expr(below, B=counted, N=extent),
                      quote_expr(above, B=value, N=extent))


class LowerArrays:
    def __init__(self, source, typer, namer, effects):
        self.source = source
        self.effects = effects
        self.typer = typer
        self.env = typer.env
        self.namer = namer
        self.local_arrays = set()
        self.old_values = {}        # array -> the local array holding a copy of its old values
        self.after_return = None    # the statement that may return before the block lowered
        self.enclosing = None       # the top-level statement being lowered
        self.hoisted = []           # allocations to place before it
        self.user_names = {}        # a renamed argument -> its name in the kernel
        self.tuple_values = set()   # the temporaries of tuple assignments, read once
        self.tuple_bases = {}       # such a temporary -> (array it names or views, its text)
        self.stores = {}            # name -> how many times the kernel binds it
        self.written_in_place = {}  # array -> a statement writing its elements
        self.lowering = None        # the element-wise statement or reduction being lowered
        self.flags = set()          # the flags of names that may be read unbound

    def _fail(self, node, message):
        raise self.source.error(node, message)

    def run(self, tree):
        self.flags = flags_in(tree)
        self.user_names = getattr(tree, "adsrc_user_names", {})
        self.tuple_values = {stmt.targets[0].id for stmt in walk_statements(tree.body)
                             if getattr(stmt, "adsrc_tuple_value", False)}
        self.tuple_bases = self._tuple_bases(tree)
        self.stores = _stores(tree)
        self.written_in_place = self._written_in_place(tree)
        tree.body = self._block(tree.body, top=True)
        for array, copy_name in self.old_values.items():
            self._allocate_like(tree, copy_name, array)
        return tree

    def _allocate_like(self, tree, new, array):
        """``new = np.empty_like(array)`` at the top level: at the start of the kernel for an
        argument, else just after the local array's own allocation (local arrays are allocated
        at the top level, once), so that a loop's statements never allocate."""
        position = 0
        if array not in self.source.params:
            position = 1 + next(k for k, stmt in enumerate(tree.body)
                                if isinstance(stmt, gast.Assign)
                                and isinstance(stmt.targets[0], gast.Name)
                                and stmt.targets[0].id == array)
        allocation = quote("T = np.empty_like(A)", T=new, A=array)[0]
        self._located([allocation], tree.body[max(position - 1, 0)])
        tree.body.insert(position, allocation)

    def _block(self, stmts, top):
        out = []
        for stmt in stmts:
            if top:
                self.enclosing = stmt
            lowered = self._statement(stmt, top)
            if top:
                out.extend(self.hoisted)
                self.hoisted = []
            out.extend(lowered)
        return out

    def _statement(self, stmt, top):
        if isinstance(stmt, (gast.For, gast.While)):
            stmt.body = self._block(stmt.body, top=False)
            return [stmt]
        if isinstance(stmt, gast.If):
            outer = self.after_return
            self.after_return = getattr(stmt, "adsrc_after_return", outer)
            stmt.body = self._block(stmt.body, top=False)
            self.after_return = outer
            stmt.orelse = self._block(stmt.orelse, top=False)
            return [stmt]
        if not isinstance(stmt, gast.Assign):
            return [stmt]
        target, value = stmt.targets[0], stmt.value
        if is_rule_call(value):
            return [stmt]           # the rule computes the whole array; nothing to lower
        func = _callee(value)
        if func in REDUCTION_CALLS and _reduced_axis(value) is None:
            return self._reduction(stmt, func)
        if isinstance(target, gast.Name) and self._is_array(value):
            return self._local_array(stmt, top)
        if isinstance(target, gast.Subscript) and self._has_slice(target):
            return self._elementwise(stmt)
        if isinstance(target, gast.Subscript) and self._is_array(value):
            self._fail(stmt, "storing an array into a single element")
        return [stmt]

    # what is an array ---------------------------------------------------------------------------

    def _type(self, node):
        if isinstance(node, gast.Name):
            return self.env.get(node.id)
        return None

    def _is_array(self, node):
        """Whether an expression is array-valued (typed with the current environment)."""
        kind = self.typer.expr(node)
        return kind is not None and kind.is_array

    def _array_leaves(self, node):
        """Array operands of an element-wise expression, left to right: bare array names,
        sliced subscripts and matrix-vector products."""
        if matrix_vector(node) is not None:
            return [node]
        if isinstance(node, gast.Name):
            kind = self._type(node)
            return [node] if kind is not None and kind.is_array else []
        if isinstance(node, gast.Subscript):
            return [node] if self._has_slice(node) or self._is_gather(node) \
                or _new_axis_of_expression(node) else []
        if isinstance(node, gast.Attribute):
            return [node] if node.attr == "T" else []
        if _callee(node) in READ_BY_ELEMENT or _reduced_axis(node) is not None:
            return [node]
        leaves = []
        for child in gast.iter_child_nodes(node):
            if isinstance(child, gast.expr):
                leaves.extend(self._array_leaves(child))
        return leaves

    def _is_gather(self, node):
        """``x[idx]``, an array index (types allows it only as a 1-D integer array indexing a
        1-D array)."""
        return isinstance(node, gast.Subscript) and not self._has_slice(node) \
            and self._is_array(node.slice)

    def _counts(self, leaf):
        """The extents of an array operand's axes, for loops over its elements; None for an
        axis a subscript adds (``x[:, None]``), which broadcasts."""
        form = matrix_vector(leaf)
        if form is not None:        # M @ v, M @ B: M's rows, and B's columns
            return [_product_length(form)] + self._extents(form[2])[1:]
        if isinstance(leaf, gast.Attribute):        # A.T
            return self._counts(leaf.value)[::-1]
        func = _callee(leaf)
        if func == "np.diag":
            return [quote_expr("min(A.shape[0], A.shape[1])", A=leaf.args[0])]
        if func == "np.roll":
            return [quote_expr("A.shape[0]", A=leaf.args[0])]
        if func == "np.diff":
            return [quote_expr("A.shape[0] - 1", A=leaf.args[0])]
        if func == "np.outer":
            return [self._extents(leaf.args[0])[0], self._extents(leaf.args[1])[0]]
        if func in ("np.ones", "np.full"):
            return _shape_extents(leaf.args[0], self.typer.expr(leaf).ndim)
        if func in ("np.ones_like", "np.full_like"):
            return self._extents(leaf.args[0])
        if func == "np.eye":
            return [leaf.args[0], leaf.args[0]]
        if _reduced_axis(leaf) is not None:
            return [self._extents(leaf.args[0])[1 - _reduced_axis(leaf)]]
        if self._is_gather(leaf):
            return self._extents(leaf.slice)
        if _new_axis_of_expression(leaf):
            whole = self._extents(leaf.value)[0]
            return [whole, None] if new_axis(leaf.slice.elts[1]) else [None, whole]
        _, axes = self._axes(leaf)
        return [axis.count if isinstance(axis, _Axis) else None for _, axis in axes
                if isinstance(axis, _Axis) or axis is _NEW_AXIS]

    def _extents(self, value):
        """The extents of an array expression's axes: NumPy's broadcast of its operands'.  An
        operand's axes line up with the expression's last ones; an axis a subscript adds
        (``x[:, None]``) has the extent another operand gives it, else 1."""
        ndim = self.typer.expr(value).ndim
        extents = [None] * ndim
        for leaf in self._array_leaves(value):
            counts = self._counts(leaf)
            for axis, count in enumerate(counts, start=ndim - len(counts)):
                if extents[axis] is None:
                    extents[axis] = count
        return [const(1) if extent is None else extent for extent in extents]

    @staticmethod
    def _has_slice(node):
        index = node.slice
        parts = index.elts if isinstance(index, gast.Tuple) else [index]
        return any(isinstance(part, gast.Slice) for part in parts)

    # statements ---------------------------------------------------------------------------------

    def _local_array(self, stmt, top):
        """``a = <array>``.  NumPy binds the name to a new array; adsrc keeps one array per
        name, allocated once at the top level, and fills it in place.  The two agree because
        no other name holds the array a name let go of ('a = b' copies, where that agrees)
        and the shape stays the same (checked where it could change).  So a first binding
        inside a loop or branch allocates before the top-level statement holding it, and a
        binding again fills the array that is there."""
        target, value = stmt.targets[0], stmt.value
        if target.id in self.source.params:
            self._fail(stmt, f"'{target.id}' is an argument: update it in place with "
                             f"'{target.id}[:] = ...' instead of rebinding it")
        if isinstance(value, gast.Name) and value.id not in self.tuple_values:
            self._check_copy_is_alias(stmt)
        viewed = self._viewed_array(value)
        if viewed is not None:
            self._check_copy_is_view(stmt, viewed, gast.unparse(value).strip())
        if isinstance(value, gast.Name) and value.id in self.tuple_bases:
            self._check_copy_is_view(stmt, *self.tuple_bases[value.id])
        allocation, fill, shape = self._allocation(stmt)
        if target.id in self.local_arrays:
            return self._located(self._same_shape(target.id, shape, stmt), stmt) \
                + self._filled(fill)
        self.local_arrays.add(target.id)
        if top:
            if _callee(value) in ALLOCATIONS:
                return [stmt]       # its own values, zeros or any
            return self._located(allocation, stmt) + self._filled(fill)
        extents = self._extents_before(shape)
        if extents is None:
            self._refuse_changing_shape(stmt, shape)
        self.hoisted += self._located([self._ahead(substitute(part, extents))
                                       for part in allocation], stmt)
        return self._not_negative(stmt, shape) + self._filled(fill)

    def _ahead(self, allocation):
        """An allocation moved ahead of its statement, which some paths do not reach: its
        extents are read only where the names they read are bound
        (:func:`adsrc.frontend.unbound_reads.only_when_bound`), and a negative one gives no
        element (NumPy would refuse it, where Python may never reach the statement;
        :meth:`_not_negative` checks it where it does)."""
        call = allocation.value
        if _callee(call) in ("np.empty", "np.zeros") and call.args:
            call.args[0] = _map_extents(call.args[0], lambda extent: only_when_bound(
                _at_least_zero(extent), self.flags))
        return allocation

    def _not_negative(self, stmt, shape):
        """At the statement of the kernel's own np.zeros/np.empty made ahead of it, NumPy's
        refusal of a negative extent, as an assert (the allocation ahead gave no element)."""
        if _callee(stmt.value) not in ("np.zeros", "np.empty") \
                or isinstance(shape, gast.Attribute):
            return []
        extents = shape.elts if isinstance(shape, gast.Tuple) else [shape]
        message = const(f"{self.source.place(stmt)}: negative dimensions are not allowed")
        return self._located([gast.Assert(test=quote_expr("E >= 0", E=extent), msg=message)
                              for extent in extents if not _never_negative(extent)], stmt)

    def _written_in_place(self, tree):
        """{array: a statement writing its elements}, through a subscript (``x[i] = ...``,
        ``x[:] = ...``, ``x += ...``) or a user call writing the argument."""
        written = {}
        for stmt in walk_statements(tree.body):
            names = set()
            if isinstance(stmt, gast.Assign) and isinstance(stmt.targets[0], gast.Subscript) \
                    and not getattr(stmt, "adsrc_fills_binding", False):
                # (y = solve(A, b), filled whole as y[:] = ... once allocated, binds y)
                names.add(stmt.targets[0].value.id)
            call = user_call(stmt, self.effects.user_functions)
            if call is not None:
                names |= self.effects.call_writes(call)
            for array in names:
                written.setdefault(array, stmt)
        return written

    def _check_copy_is_alias(self, stmt):
        """``a = b``: NumPy makes ``a`` a second name for ``b``'s array; adsrc copies the
        values into ``a``'s own.  The two agree when neither array is written in place (its
        elements, not a binding to a new array) anywhere in the kernel: momentum methods'
        ``x_old = x`` before ``x = y - lr * g``.  Otherwise a write through one name would
        show through the other in NumPy, and not here: refused, saying where."""
        target, value = stmt.targets[0], stmt.value
        spelled = [self.user_names.get(node.id, node.id) for node in (target, value)]
        for array, shown in zip((target.id, value.id), spelled):
            if array in self.written_in_place and hasattr(stmt, "adsrc_returned_early"):
                function, returned = stmt.adsrc_returned_early
                self._fail(stmt, f"'{function}' returns from inside a loop or branch, and "
                                 f"one of its returns gives its array '{returned}', which is "
                                 "written in place: adsrc stores each returned value in a "
                                 "name of its own, with an array of its own, so return a copy "
                                 f"at each 'return {returned}' ('return np.copy({returned})')")
            if array in self.written_in_place:
                line = self.source.location(self.written_in_place[array])[1]
                self._fail(stmt, "'{0} = {1}' makes two names for one array, and '{2}' is "
                                 "written in place (line {3}): adsrc gives each name an array "
                                 "of its own, which agrees with NumPy only for arrays never "
                                 "written in place; write '{0} = np.copy({1})'".format(
                                     *spelled, shown, line))

    def _viewed_array(self, value):
        """The name of the array whose elements ``value`` is a NumPy view of (a row ``A[0]``, a
        slice ``x[1:]``, ``A.T``, ``np.diag(A)`` of a matrix), else None.  An index that is an
        array (NumPy's copy) does not count; every other subscript of a name does."""
        if isinstance(value, gast.Subscript) and isinstance(value.value, gast.Name):
            parts = value.slice.elts if isinstance(value.slice, gast.Tuple) else [value.slice]
            if not any(self._is_array(part) for part in parts
                       if not isinstance(part, gast.Slice)):
                return value.value.id
        if isinstance(value, gast.Attribute) and value.attr == "T" \
                and isinstance(value.value, gast.Name):
            return value.value.id
        if _callee(value) in ("np.diag", "np.diagonal") and value.args \
                and isinstance(value.args[0], gast.Name):
            kind = self._type(value.args[0])
            if kind is not None and kind.is_array and kind.ndim == 2:
                return value.args[0].id
        return None

    def _tuple_bases(self, tree):
        """``{temporary: (array, text)}`` for the temporaries of tuple assignments that hold
        an array, or a view of one, that the assignment does not bind again: ``a, s = p, 1.0``
        makes ``a`` a second name for ``p``'s array in NumPy (where ``p, q = q, p`` leaves
        each array one name, and copies agree)."""
        bases = {}
        for stmt in walk_statements(tree.body):
            rebound = getattr(stmt, "adsrc_tuple_targets", None)
            if rebound is None:
                continue
            value = stmt.value
            if _callee(value) == "np.copy" and getattr(value, "adsrc_swapped_copy", False):
                value = value.args[0]
            if isinstance(value, gast.Name):
                array = value.id if self._is_array(value) else None
            else:
                array = self._viewed_array(value)
            if array is not None and array not in rebound:
                bases[stmt.targets[0].id] = (array, gast.unparse(value).strip())
        return bases

    def _check_copy_is_view(self, stmt, viewed, text):
        """``r = A[0]``: NumPy makes ``r`` a view of ``A``'s elements (``r = b``, through a tuple
        assignment: the same array), where adsrc copies their values into ``r``'s own array.
        As for ``a = b``, the two agree when neither array is written in place anywhere in the
        kernel; otherwise refused, saying where."""
        target = stmt.targets[0].id
        shown = self.user_names.get(target, target)
        if getattr(stmt, "adsrc_tuple_value", False) and target not in self.user_names \
                and viewed in self.written_in_place:
            # a value of 'a[0], a[2] = a[2], a[0]', held by a temporary the user never named
            self._fail(stmt, f"the value '{text}' of this tuple assignment is a view of the "
                             f"elements of '{self.user_names.get(viewed, viewed)}' in NumPy, "
                             "which Python reads only when it stores it, after the stores "
                             "before it (a swap of rows through views does not swap); copy "
                             f"it first: 'tmp = np.copy({text})'")
        for array in (target, viewed):
            if array in self.written_in_place:
                line = self.source.location(self.written_in_place[array])[1]
                relation = ("a second name for the array" if text == viewed
                            else "a view of the elements")
                owner = self.user_names.get(viewed, viewed)
                if shown.startswith("_"):
                    # a temporary adsrc made of a call's argument: the user wrote no name
                    written = ("the call writes it" if array == target
                               else f"'{self.user_names.get(array, array)}' is written")
                    self._fail(stmt, f"the argument '{text}' is {relation} of '{owner}' in "
                                     f"NumPy, and {written} in place (line {line}): adsrc "
                                     "gives the argument an array of its own, which agrees "
                                     "with NumPy only for arrays never written in place; "
                                     f"pass 'np.copy({text})', or pass '{owner}' and index it "
                                     "in the called kernel")
                self._fail(stmt, f"'{shown} = {text}' makes '{shown}' {relation} of "
                                 f"'{self.user_names.get(viewed, viewed)}' in NumPy, and "
                                 f"'{self.user_names.get(array, array)}' is written in place "
                                 f"(line {line}): adsrc gives each name an array of its own, "
                                 "which agrees with NumPy only for arrays never written in "
                                 f"place; write '{shown} = np.copy({text})', or index "
                                 f"'{self.user_names.get(viewed, viewed)}' where '{shown}' is "
                                 "used")

    def _allocation(self, stmt):
        """``(allocation, fill, shape)`` for ``a = <array>``: the statements allocating the
        array, the statement giving it its values (None: np.empty's are any), and the shape."""
        target, value = stmt.targets[0], stmt.value
        func = _callee(value)
        if func in ALLOCATIONS:
            like = func.endswith("_like")
            shape = quote_expr("A.shape", A=value.args[0]) if like else value.args[0]
            zeros = quote("T[:] = 0.0", T=target.id)[0] if func.startswith("np.zeros") else None
            return [copy.deepcopy(stmt)], self._whole(zeros, stmt), shape
        if func == "np.copy" or isinstance(value, gast.Name):
            # a tuple assignment's temporary is read once: its values may be copied
            source = value.args[0] if func == "np.copy" else value
            return (quote("T = np.empty_like(S)", T=target.id, S=source),
                    self._whole(quote("T[:] = S", T=target.id, S=source)[0], stmt),
                    quote_expr("S.shape", S=source))
        shape = self._full_shape(value)
        if shape is None:
            self._fail(stmt, f"allocate '{target.id}' with np.zeros/np.empty first, then "
                             f"assign '{target.id}[:] = ...'")
        # a slice's count at or below zero is an empty axis ('t = x[i:1]' with i past 1)
        shape = _map_extents(shape, _at_least_zero)
        return (quote("T = np.empty(S)", T=target.id, S=shape),
                self._whole(quote("T[:] = V", T=target.id, V=value)[0], stmt), shape)

    def _whole(self, fill, stmt):
        """``fill`` (``a[:] = ...``) with a full slice for each of the array's dimensions,
        placed at the user's ``stmt``."""
        if fill is None:
            return None
        if self.env[stmt.targets[0].id].ndim == 2:
            fill.targets[0].slice = full_slice(2)
        return self._located([fill], stmt)[0]

    def _filled(self, fill):
        return [] if fill is None else self._elementwise(fill)

    def _same_shape(self, array, shape, stmt):
        """Asserts that a binding again gives ``array`` the shape it has: NumPy would bind
        the name to an array of another shape, which one array per name cannot hold."""
        extents = _shape_extents(shape, self.env[array].ndim)
        message = const(f"{self.source.place(stmt)}: '{self.user_names.get(array, array)}' is "
                        f"bound again to an array of another shape: adsrc fills one array per "
                        f"name in place")
        return [gast.Assert(test=quote_expr(f"A.shape[{dim}] == E", A=array, E=extent),
                            msg=message)
                for dim, extent in enumerate(extents)
                if gast.dump(extent) != gast.dump(quote_expr(f"A.shape[{dim}]", A=array))]

    def _extents_before(self, shape):
        """A first binding inside a loop or branch is allocated before the top-level statement
        holding it, where the scalars that statement assigns have not their values yet: for
        each one the shape reads, the value it always gets when that only reads arrays' extents
        (``n = len(x)``, ``m = u.shape[0] // 2``: an array's shape never changes), to read in
        its place; None when a scalar gets another value (a counter, a sum), or has one before
        the statement too (which its first trip may read before binding it again)."""
        assignments = {}
        for node in gast.walk(self.enclosing):
            if isinstance(node, gast.Assign) and isinstance(node.targets[0], gast.Name):
                assignments.setdefault(node.targets[0].id, []).append(node.value)
        stores = _stores(self.enclosing)
        extents = {}

        def extent(expression, seen):
            """``expression`` with its assigned scalars replaced, or None."""
            expression = copy.deepcopy(expression)
            measured = {id(node.args[0]) for node in gast.walk(expression)
                        if _callee(node) == "len" and len(node.args) == 1}
            measured |= {id(node.value) for node in gast.walk(expression)
                         if isinstance(node, gast.Attribute) and node.attr == "shape"}
            for node in gast.walk(expression):
                if isinstance(node, gast.Call) and _callee(node) not in ("len", "min", "max"):
                    return None
                if not isinstance(node, gast.Name) or node.id == "len":
                    continue
                if id(node) in measured:
                    if node.id not in self.source.params and node.id not in self.local_arrays:
                        return None
                elif node.id in stores:
                    values = assignments.get(node.id, [])
                    if node.id in seen or node.id in self.source.params \
                            or self.stores[node.id] != stores[node.id] \
                            or len(values) != stores[node.id] or any(
                                gast.dump(value) != gast.dump(values[0]) for value in values):
                        return None
                    if node.id not in extents:
                        found = extent(values[0], seen | {node.id})
                        if found is None:
                            return None
                        extents[node.id] = found
            return substitute(expression, {name: extents[name] for name in extents
                                           if name in {node.id for node in gast.walk(expression)
                                                       if isinstance(node, gast.Name)}})

        return extents if extent(shape, frozenset()) is not None else None

    def _refuse_changing_shape(self, stmt, shape):
        changing = self._changing(shape)
        after = "" if self.after_return is None else (
            f" (the statement at line {self.source.location(self.after_return)[1]} may "
            f"return early, and the rest of the kernel runs inside a branch)")
        why = f"that '{', '.join(changing)}' changes there" if changing \
            else "computed there, by a call"
        self._fail(stmt, f"the local array '{stmt.targets[0].id}' is first allocated inside a "
                         f"loop or branch{after} with a shape {why}: adsrc allocates it once, "
                         f"before, so allocate it at the top level with its largest shape and "
                         f"fill a slice of it")

    def _changing(self, shape):
        """The scalars a shape reads that the top-level statement being lowered assigns."""
        assigned = {node.id for node in gast.walk(self.enclosing)
                    if isinstance(node, gast.Name) and isinstance(node.ctx, gast.Store)}
        return sorted(node.id for node in gast.walk(shape)
                      if isinstance(node, gast.Name) and node.id in assigned
                      and not (self._type(node) is not None and self._type(node).is_array))

    def _full_shape(self, value):
        """The shape of an array expression: ``a.shape`` of its first operand that is an array
        name of as many dimensions, else the operands' extents: a matrix-vector product's
        (``(M.shape[0],)``), a slice's (``x[1:-1:2]`` has ``(x.shape[0] - 2 + 1) // 2``
        elements), a diagonal's, a gather's, an outer product's."""
        leaves = self._array_leaves(value)
        if not leaves:
            return None
        ndim = self.typer.expr(value).ndim
        for leaf in leaves:
            if isinstance(leaf, gast.Name) and self._type(leaf).ndim == ndim:
                return quote_expr("A.shape", A=leaf)
        return gast.Tuple(self._extents(value), gast.Load())

    def _axes(self, subscript):
        """Sliced axes of an array operand ``a[...]`` (or a bare array name), with their index
        positions; scalar indices are kept as they are."""
        if isinstance(subscript, gast.Name):
            ndim = self.env[subscript.id].ndim
            array = subscript
            parts = [gast.Slice(None, None, None)] * ndim
        else:
            array = subscript.value
            index = subscript.slice
            parts = index.elts if isinstance(index, gast.Tuple) else [index]
        axes = []
        dims = iter(range(len(parts)))          # the array's own axes
        for part in parts:
            if new_axis(part):
                axes.append((None, _NEW_AXIS))
                continue
            dim = next(dims)
            if isinstance(part, gast.Slice):
                axes.append((dim, self._axis(array, dim, part)))
            else:
                axes.append((dim, part))
        return array, axes

    def _axis(self, array, dim, part):
        """A slice's start, step and count, as Python takes them: a bound counts from the end
        when negative and is clipped to the array (``x[-k:]``, ``x[:100]``, ``x[i - 1:i + 2]``
        at ``i = 0``); a count at or below zero runs no trip.  Constant bounds that need
        neither stay as they are (``x[1:-1]``: ``1``, ``N - 1``)."""
        step = 1 if part.step is None else int_literal(part.step)
        if not step:
            self._fail(part.step, "slices need a constant, non-zero step")
        extent = quote_expr("A.shape[D]", A=array, D=const(dim))
        if step > 0:
            start = _slice_bound(part.lower, extent, const(0), "max(B, 0)", "B")
            stop = _slice_bound(part.upper, extent, extent, "B", "min(B, N)")
            low, high = start, stop
        else:       # down from the last element to before the first (-1, not from the end)
            start = _slice_bound(part.lower, extent, quote_expr("N - 1", N=extent), "B",
                                 "min(B, N - 1)")
            stop = _slice_bound(part.upper, extent, const(-1), "max(B, -1)", "min(B, N - 1)")
            low, high = stop, start
        if isinstance(low, gast.Constant) and low.value == 0:
            span = high
        else:
            span = quote_expr("HIGH - LOW", HIGH=high, LOW=low)
        size = abs(step)
        if size == 1:
            count = span
        else:
            count = quote_expr("(SPAN + STEPM1) // STEP", SPAN=span, STEPM1=const(size - 1),
                               STEP=const(size))
        return _Axis(start, step, count)

    def _elementwise(self, stmt):
        """``T[slices] = expr`` as nested loops over the sliced axes of T."""
        target = stmt.targets[0]
        array, axes = self._axes(target)
        sliced = [axis for _, axis in axes if isinstance(axis, _Axis)]
        kind = self.typer.expr(stmt.value)
        if kind is not None and kind.is_array and kind.ndim > len(sliced):
            self._fail(stmt, f"storing a {kind.ndim}-D array into {len(sliced)}-D "
                             f"'{gast.unparse(target).strip()}': NumPy broadcasts an array "
                             f"only along more dimensions, never fewer")
        counters = [self.namer.fresh("i") for _ in sliced]
        checks, before = [], []
        self.lowering = _Lowering(stmt, counters)
        element_value = self._elements(stmt.value, sliced, counters, checks, before)
        index = self._index(axes, counters)
        ranges = [quote_expr("range(N)", N=axis.count) for axis in sliced]
        copies = self._read_old_values(stmt, array, index, [element_value] + before,
                                       [index] + ranges)
        body = before + [gast.Assign(targets=[gast.Subscript(array, index, gast.Store())],
                                     value=element_value, type_comment=None)]
        for counter, iterator in reversed(list(zip(counters, ranges))):
            body = [gast.For(target=name(counter, store=True), iter=iterator, body=body,
                             orelse=[], type_comment=None)]
        return self._located(checks + copies + body, stmt)

    def _read_old_values(self, stmt, array, index, computing, placing):
        """NumPy evaluates the right-hand side before storing; an element loop stores as it
        goes.  The two agree when every read of the target array reads the element being
        written (read just before it is stored).  Reads of other elements (``x[1:-1] +=
        x[:-2] + x[2:]``) are sent to a copy of the array's old values, taken just before the
        loop, as NumPy's temporary holds them; so is every read of it in ``placing``, the
        target's index and the loops' ranges, which NumPy evaluates once, before storing
        (``x[int(x[0]):] = 0.7`` starts where the old ``x[0]`` says, all along).  Returns the
        statements taking the copy (none when no read needs it).  ``computing``: the element's
        value and the statements computing its products."""
        written = gast.dump(index)
        reads = [node for tree in computing for node in gast.walk(tree)
                 if _reads_element_of(node, array) and gast.dump(node.slice) != written]
        elsewhere = reads + [node for tree in placing for node in gast.walk(tree)
                             if _reads_element_of(node, array)]
        if not elsewhere:
            return []
        if array.id not in self.old_values:
            self.old_values[array.id] = self.namer.fresh("old")
        copy_name = self.old_values[array.id]
        for node in elsewhere:
            node.value = name(copy_name)
        whole = full_slice(self.env[array.id].ndim)
        taking = quote("C[S] = A", C=copy_name, S=whole, A=array.id)[0]
        return self._elementwise(self._located([taking], stmt)[0])

    def _index(self, axes, counters):
        parts, position = [], 0
        for _, axis in axes:
            if axis is _NEW_AXIS:
                position += 1               # the element is the same along it
            elif isinstance(axis, _Axis):
                parts.append(axis.index(counters[position]))
                position += 1
            else:
                parts.append(copy.deepcopy(axis))
        return parts[0] if len(parts) == 1 else gast.Tuple(parts, gast.Load())

    def _elements(self, value, sliced, counters, checks, before):
        """The element of an array expression at the loop counters.  ``checks``: asserts to run
        before the loops; ``before``: statements the loop body runs before using the element
        (the sums of matrix-vector products).

        An array of fewer dimensions than the statement's is broadcast, as NumPy does: its
        axes are the statement's last ones (a 1-D ``d`` in ``A * d`` scales A's columns)."""
        kind = self.typer.expr(value)
        if kind is not None and kind.is_array and kind.ndim < len(sliced):
            return self._elements(value, sliced[-kind.ndim:], counters[-kind.ndim:], checks,
                                  before)
        form = matrix_vector(value)
        if form is not None:
            return self._computed_once(value, sliced, counters, checks, before) \
                or self._product_element(value, form, sliced, counters, checks, before)
        if isinstance(value, gast.Subscript) and isinstance(value.value, gast.Name) \
                and self._has_slice(value) or (isinstance(value, gast.Name)
                                               and self._type(value) is not None
                                               and self._type(value).is_array):
            array, axes = self._axes(value)
            operand_sliced = [axis for _, axis in axes
                              if isinstance(axis, _Axis) or axis is _NEW_AXIS]
            if len(operand_sliced) != len(sliced):
                self._fail(value, "element-wise operands must have the same number of "
                                  "dimensions as the target")
            for mine, theirs in zip(operand_sliced, sliced):
                if mine is not _NEW_AXIS:
                    self._check_extent(value, mine.count, theirs.count, checks)
            return gast.Subscript(array, self._index(axes, counters), gast.Load())
        if isinstance(value, gast.Attribute) and value.attr == "T":
            return self._elements(value.value, sliced[::-1], counters[::-1], checks, before)
        if _callee(value) in INDEXED_READS:
            for count, axis in zip(self._counts(value), sliced):
                self._check_extent(value, count, axis.count, checks)
            return _indexed_read(value, counters)
        if _reduced_axis(value) is not None:
            return self._computed_once(value, sliced, counters, checks, before) \
                or self._reduced_element(value, sliced, counters, checks, before)
        if _callee(value) == "np.outer":
            first, second = value.args
            return quote_expr("U * V", U=self._elements(first, sliced[:1], counters[:1], checks,
                                                        before),
                              V=self._elements(second, sliced[1:], counters[1:], checks, before))
        if _new_axis_of_expression(value):
            axis = 0 if new_axis(value.slice.elts[1]) else 1
            return self._elements(value.value, sliced[axis:axis + 1], counters[axis:axis + 1],
                                  checks, before)
        if self._is_gather(value):
            index = self._elements(value.slice, sliced, counters, checks, before)
            return gast.Subscript(value.value, index, gast.Load())
        if _callee(value) in CUMULATIVE_CALLS:
            return self._running_element(value, sliced, counters, checks, before)
        if isinstance(value, gast.IfExp):
            outer, self.lowering.in_a_branch = self.lowering.in_a_branch, True
            try:
                if getattr(value, "adsrc_elementwise", False):     # np.where: both sides
                    return self._elements_of_fields(value, sliced, counters, checks, before)
                return self._chosen_elements(value, sliced, counters, checks, before)
            finally:
                self.lowering.in_a_branch = outer
        if _callee(value) == "np.copy" and len(value.args) == 1:
            # a copy's elements are those of the array copied: the statement reads its
            # right-hand side before any store, as NumPy does, copied or not
            return self._elements(value.args[0], sliced, counters, checks, before)
        if isinstance(value, gast.Call) and _callee(value) in ALLOCATIONS + ("np.copy",) \
                + REDUCTION_CALLS:
            self._fail(value, "this call is not supported inside an element-wise expression")
        if not self._is_array(value):
            return value        # a scalar the elements share: w[k], len(x), x.shape[0]
        return self._elements_of_fields(value, sliced, counters, checks, before)

    def _chosen_elements(self, value, sliced, counters, checks, before):
        """``a if c else b`` with a scalar ``c``: Python evaluates one branch, so each branch's
        extents are checked only when it is the one chosen (the other may have any shape)."""
        chosen = {}
        for field in ("body", "orelse"):
            chosen[field] = []
            setattr(value, field, self._elements(getattr(value, field), sliced, counters,
                                                 chosen[field], before))
        value.test = self._elements(value.test, sliced, counters, checks, before)
        if chosen["body"] or chosen["orelse"]:
            checks.append(gast.If(test=copy.deepcopy(value.test),
                                  body=chosen["body"] or [gast.Pass()],
                                  orelse=chosen["orelse"]))
        return value

    def _elements_of_fields(self, value, sliced, counters, checks, before):
        """An element-wise operation (a BinOp, a call of an element-wise function...) of the
        elements of its operands."""
        for field, child in gast.iter_fields(value):
            if isinstance(child, list):
                setattr(value, field, [self._elements(item, sliced, counters, checks, before)
                                       if isinstance(item, gast.expr) else item
                                       for item in child])
            elif isinstance(child, gast.expr) and not (isinstance(value, gast.Call)
                                                       and field == "func"):
                setattr(value, field, self._elements(child, sliced, counters, checks, before))
        return value

    def _running_element(self, node, sliced, counters, checks, before):
        """Element ``i`` of ``np.cumsum(e)`` (``np.cumprod``): a temporary set to 0.0 (1.0)
        before the statement's loop, with ``checks``, to which each trip adds (by which it
        multiplies) ``e[i]``, in ``before``.  Right only where the statement's one loop asks
        for the elements once each, in order; elsewhere (a 2-D statement or a broadcast,
        inside a product or a reduction along an axis, a branch of a conditional expression)
        the running values are computed once, before, into an array of their own."""
        lowering = self.lowering
        if lowering.loops != counters or lowering.in_a_branch:
            element = self._computed_once(node, sliced, counters, checks, before, always=True)
            if element is None:
                self._fail(node, f"{_callee(node)} here needs an array of its own, "
                                 f"allocated once before the top-level statement holding it, "
                                 f"and its length changes there: allocate one at the top level "
                                 f"with its largest length and fill a slice of it with "
                                 f"{_callee(node)}")
            return element
        start, step = _RUNNING[_callee(node)]
        element = self._elements(node.args[0], sliced, counters, checks, before)
        running = self.namer.fresh("s")
        checks.append(gast.Assign(targets=[name(running, store=True)], value=const(start),
                                  type_comment=None))
        before.extend(quote(step, S=running, E=element))
        return name(running)

    def _computed_once(self, node, sliced, counters, checks, before, always=False):
        """The element at ``counters`` of an array expression whose elements are sums (a
        matrix product, a reduction along an axis) or running values, read from a local array
        holding the whole expression, computed in ``checks``, before the statement's loops,
        as NumPy computes it, where the statement would otherwise compute an element again on
        every trip of a loop around it (``always``: wherever it is asked for).  Computed where
        it is used, an element of ``B @ x`` in ``A @ (B @ x)`` costs a row of B for each row
        of A, and of ``np.sum(E, axis=1)[:, None]`` a row of E for each element of E.

        None where the element is computed where it is used: it is asked for once, or the
        array cannot be allocated once, before the top-level statement (its shape changes
        there)."""
        lowering = self.lowering
        if not (always or lowering.asks_again(counters)):
            return None
        shape = self._full_shape(node)
        if shape is None or self._changing(shape):
            return None
        array = self.namer.fresh("a")
        self.env[array] = self.typer.expr(node)
        binding = self._located([gast.Assign(targets=[name(array, store=True)],
                                             value=copy.deepcopy(node), type_comment=None)],
                                lowering.stmt)
        try:
            checks.extend(self._local_array(binding[0], top=False))
        finally:
            self.lowering = lowering
        read = gast.copy_location(name(array), lowering.stmt)
        return self._elements(read, sliced, counters, checks, before)

    def _check_extent(self, operand, count, expected, checks):
        """An assert that an operand's extent is the statement's, unless they are spelled the
        same.  A slice's count at or below zero is an empty axis (``x[3:1]``), which fits
        any other empty one."""
        if gast.dump(count) != gast.dump(expected):
            message = const(f"{self.source.place(operand)}: operands of different shapes in an "
                            f"element-wise statement")
            test = "A == B" if _is_extent(count) and _is_extent(expected) \
                else "A == B or A <= 0 and B <= 0"
            checks.append(gast.Assert(test=quote_expr(test, A=count, B=expected),
                                      msg=message))

    def _product_element(self, node, form, sliced, counters, checks, before):
        """Element ``i`` of ``M @ v`` (``M.T @ v``): a temporary that a loop over the columns
        (rows) ``j`` of M, appended to ``before``, sums ``M[i, j] * v[j]`` (``M[j, i] * v[j]``)
        into, where ``v[j]`` is the element of the expression v.  Element ``(i, k)`` of
        ``M @ B`` the same with ``B[j, k]``."""
        matrix, transposed, vector = form
        self._check_extent(node, _product_length(form), sliced[0].count, checks)
        summed = _Axis(const(0), 1, quote_expr("M.shape[D]", M=matrix,
                                               D=const(0 if transposed else 1)))

        def term(inner, inside):
            element = self._elements(vector, [summed] + sliced[1:], [inner] + counters[1:],
                                     checks, inside)
            entry = (name(inner), name(counters[0])) if transposed else (name(counters[0]),
                                                                          name(inner))
            return quote_expr("M[I, J] * V", M=matrix, I=entry[0], J=entry[1], V=element)

        return self._accumulated(node, "np.sum", summed.count, term, checks, before)

    def _reduced_element(self, node, sliced, counters, checks, before):
        """Element ``i`` of ``np.sum(u, 1)`` (of ``np.sum(u, 0)``): a temporary that a loop over
        the columns (rows) ``j``, appended to ``before``, accumulates ``u[i, j]`` (``u[j, i]``)
        into, as for a matrix-vector product; np.mean divides by the count, np.max and np.min
        keep the largest or smallest."""
        func, axis = _callee(node), _reduced_axis(node)
        counts = self._extents(node.args[0])
        self._check_extent(node, counts[1 - axis], sliced[0].count, checks)
        operand_axes = [_Axis(const(0), 1, count) for count in counts]

        def entry(inner, inside):
            operand_counters = [counters[0], inner] if axis == 1 else [inner, counters[0]]
            return self._elements(node.args[0], operand_axes, operand_counters, checks, inside)

        return self._accumulated(node, func, counts[axis], entry, checks, before)

    def _accumulated(self, node, func, count, element_at, checks, before):
        """A temporary holding ``func`` (np.sum, np.mean, np.max, np.min) of the elements
        ``element_at(j, inside)`` for ``j`` in ``range(count)``, computed by statements
        appended to ``before``; ``element_at`` appends to ``inside`` what the loop body must
        compute before the element."""
        inner = self.namer.fresh("i")
        total = self.namer.fresh("s")
        inside = []
        self.lowering.loops.append(inner)
        try:
            element = element_at(inner, inside)
        finally:
            self.lowering.loops.pop()
        init, step, finish = self._accumulation(node, func, total, element, count, checks,
                                                [inner])
        loop = gast.For(target=name(inner, store=True), iter=quote_expr("range(N)", N=count),
                        body=inside + step, orelse=[], type_comment=None)
        before.extend(init + [loop] + finish)
        return name(total)

    def _accumulation(self, node, func, total, element, count, checks, counters):
        """``(init, step, finish)`` statements reducing ``element`` into ``total`` over
        ``count`` elements, indexed by the loop ``counters``: ``s = 0.0; s = s + e`` (np.mean:
        then ``s = s / count``), or ``s = -inf; s = max(s, e) if e == e and i > 0 else e``
        (np.min: inf and min) after an assert, added to ``checks``, that there is an element
        (NumPy raises on none; -inf would be a wrong number).

        The first element is taken as it is, not compared with the start: the extremum of
        elements that are all -inf is the first of them, derivative and all, as in a tie
        (compared with -inf it was the start, a constant, and the gradient 0).  A NaN element
        makes the extremum NaN, as in NumPy (Python's max passes over a NaN after the first
        element, and keeps one that comes first)."""
        extremum = {"np.max": "max", "np.min": "min"}.get(func)
        if extremum is None:
            step = quote("S = S + E", S=total, E=element)
        else:
            later = quote_expr(" or ".join(f"{counter} > 0" for counter in counters))
            step = quote(f"S = {extremum}(S, E) if E == E and LATER else E", S=total,
                         E=element, LATER=later)
            checks.append(gast.Assert(test=quote_expr("N > 0", N=count), msg=const(
                f"{self.source.place(node)}: {func} of an empty array")))
        start = {None: 0.0, "max": -math.inf, "min": math.inf}[extremum]
        init = [gast.Assign(targets=[name(total, store=True)], value=const(start),
                            type_comment=None)]
        finish = quote("S = S / N", S=total, N=count) if func == "np.mean" else []
        return init, step, finish

    def _reduction(self, stmt, func):
        """``s = np.sum(e)`` / ``s = np.dot(a, b)`` as ``s = 0.0`` and an accumulation loop;
        ``np.mean`` the same, then divided by the count; ``np.max`` (``np.min``) as ``s =
        -inf`` and ``s = max(s, e) if e == e else e`` over the elements, after an assert that
        there is one (NumPy raises on an empty array, where -inf would be a wrong number).

        The result goes to a fresh temporary first (``_s0 = 0.0``, the loop, ``x[i] = _s0``)
        when the target is an element or a slice (which it fills), or a name the summand reads
        (``a = np.sum(a * x)`` must read the old ``a`` all along)."""
        target = stmt.targets[0]
        args = stmt.value.args
        if func == "np.dot":
            if len(args) != 2:
                self._fail(stmt, "np.dot takes two 1-D arrays")
            summand = gast.BinOp(args[0], gast.Mult(), args[1])
        else:
            if len(args) != 1:
                self._fail(stmt, f"{func} is supported with one argument (no axis)")
            summand = args[0]
        if not self._array_leaves(summand):
            self._fail(stmt, f"{func} needs an array argument")
        sliced = [_Axis(const(0), 1, count) for count in self._extents(summand)]
        counters = [self.namer.fresh("i") for _ in sliced]
        checks, before = [], []
        self.lowering = _Lowering(stmt, counters)
        element = self._elements(summand, sliced, counters, checks, before)
        if isinstance(target, gast.Name) and not any(
                isinstance(node, gast.Name) and node.id == target.id
                for tree in [element] + before for node in gast.walk(tree)):
            total, store = target.id, []
        else:
            total = self.namer.fresh("s")
            store = [gast.Assign(targets=[target], value=name(total), type_comment=None)]
            if isinstance(target, gast.Subscript) and self._has_slice(target):
                # y[:] = np.sum(x) fills y: the store is element-wise too
                store = self._elementwise(located(store, stmt)[0])
        count = sliced[0].count
        for axis in sliced[1:]:
            count = quote_expr("A * B", A=count, B=axis.count)
        init, step, finish = self._accumulation(stmt, func, total, element, count, checks,
                                                counters)
        body = before + step
        for counter, axis in reversed(list(zip(counters, sliced))):
            body = [gast.For(target=name(counter, store=True),
                             iter=quote_expr("range(N)", N=axis.count), body=body, orelse=[],
                             type_comment=None)]
        return self._located(init + checks + body + finish + store, stmt)

    @staticmethod
    def _located(stmts, origin):
        for stmt in located(stmts, origin):
            for node in gast.walk(stmt):
                if isinstance(node, gast.Name) and not hasattr(node, "ctx"):
                    node.ctx = gast.Load()
        return stmts

