"""The fence: reject what adsrc cannot differentiate, early, with a located error.

The fence walks the kernel before any analysis.  It accepts the documented subset (see README),
rewrites calls of supported library functions to their canonical spelling (``np.sqrt`` and
``math.sqrt`` both become ``math.sqrt``), inlines numeric module-level constants, records which
user functions are called, and raises :class:`~adsrc.errors.UnsupportedError` for anything else.
Nothing downstream has to handle a construct the fence let through by accident.
"""

import copy
import numbers
import types

import gast
import numpy as np

from adsrc.frontend import early_returns, intrinsics, unbound_reads
from adsrc.frontend.quoting import int_literal, located, new_axis, quote, quote_expr
from adsrc.frontend.source import docstring_statements
from adsrc.frontend.sparse_matrices import SparseMatrices
from adsrc.naming import GENERATED_FUNCTION_SEPARATOR, TAKEN_BY_GENERATED_CODE, free
from adsrc.rules import library
from adsrc.rules.library import RULES

_BINOPS = (gast.Add, gast.Sub, gast.Mult, gast.Div, gast.Pow, gast.FloorDiv, gast.Mod,
           gast.MatMult)
_AUGOPS = (gast.Add, gast.Sub, gast.Mult, gast.Div, gast.Pow, gast.FloorDiv, gast.Mod)
_UNARY = (gast.USub, gast.UAdd, gast.Not)
_COMPARE = (gast.Eq, gast.NotEq, gast.Lt, gast.LtE, gast.Gt, gast.GtE)
# packages whose Python functions (scipy.linalg.expm...) are library code, which adsrc
# differentiates through derivative rules only, not by reading their source as a kernel's
_LIBRARIES = ("numpy", "scipy")


class Fence(gast.NodeTransformer):
    """Validates and canonicalises one kernel tree in place.

    After :meth:`run`, ``self.callees`` maps the names of called user functions to the function
    objects.  A function called through its module (``solvers.sweep(...)``) is called by a name
    here, its own unless the kernel uses that name for something else (``sweep_2``...), as is
    every call of a user function after the fence.
    """

    def __init__(self, source):
        self.source = source
        self.callees = {}
        self.matrices = SparseMatrices(source, self._called_object, self._calls_a_kernel)
        self.element_loops = 0      # loops over an array's elements, rewritten over indices
        self.tuple_values = 0       # values of tuple assignments, held in temporaries
        self.local_names = set(source.params)
        self.generated_names = set()    # the names of early_returns' flag and result
        self.counters = []          # the counters of the for loops around the statement
        for node in gast.walk(source.tree):
            if isinstance(node, gast.Name) and isinstance(node.ctx, gast.Store):
                self.local_names.add(node.id)

    def run(self):
        tree = self.source.tree
        self._check_signature(tree)
        tree.body = tree.body[docstring_statements(tree.body):]
        for node in gast.walk(tree):        # 'return None' is 'return'
            if isinstance(node, gast.Return) and isinstance(node.value, gast.Constant) \
                    and node.value.value is None:
                node.value = None
        self._refuse_nested_functions(tree)
        self.generated_names = early_returns.rewrite(tree, self.source.error)
        self.local_names |= self.generated_names
        body = tree.body
        if not body:
            body = [gast.Pass()]
        as_written = copy.deepcopy(body)
        tree.body = self._statements(body, loop=False)
        dropped = set(self.matrices.matrices) | set(self.matrices.factorisations)
        if dropped:
            unbound_reads.refuse_reads_before_bindings(as_written, dropped,
                                                       self._defined_later)
        unbound_reads.guard(tree, self.source)
        return tree

    def _refuse_nested_functions(self, tree):
        """Before early returns are rewritten: a nested function's ``return`` is not the
        kernel's, and would be taken for one."""
        for node in gast.walk(tree):
            if node is not tree and isinstance(node, (gast.FunctionDef, gast.AsyncFunctionDef)):
                self._fail(node, f"the function '{node.name}' is defined inside the kernel: "
                                 "define it at module level (adsrc inlines the calls of "
                                 "module-level functions)")

    def _defined_later(self, stmt, matrix):
        return self.source.error(stmt, f"'{matrix}' is read here, where a path comes before "
                                       f"its definition (in a branch, or in a loop that may "
                                       f"run no trip), and Python would raise "
                                       f"UnboundLocalError: adsrc reads the matrix's arrays in "
                                       f"its place, so define it on every path before its use")

    def _fail(self, node, message):
        raise self.source.error(node, message)

    def _check_signature(self, tree):
        check_plain_parameters(self.source)
        for arg in tree.args.args:
            self._check_name(arg, arg.id)

    def _check_name(self, node, name):
        if name in self.generated_names:
            return
        if name in self.counters:
            self._fail(node, f"'{name}' is the counter of an enclosing for loop, bound again "
                             "here: adsrc takes every trip's counter from the loop's range (its "
                             "reverse sweep runs the range backwards), where Python would go on "
                             "with the new value until the next trip; use another name")
        if name.endswith("_bar") or name.endswith("_dot"):
            self._fail(node, f"the name '{name}' is reserved: adsrc names adjoints '<name>_bar' "
                             "and tangents '<name>_dot'")
        if name in TAKEN_BY_GENERATED_CODE:
            self._fail(node, f"the name '{name}' is taken by the code adsrc generates (NumPy, "
                             "the C library, the tape, a builtin it calls, or a word Cython "
                             "reserves): use another name")
        if name.startswith("_") and name != "_":
            self._fail(node, f"the name '{name}': names starting with '_' are reserved for "
                             "generated code")
        if GENERATED_FUNCTION_SEPARATOR in name:
            self._fail(node, f"the name '{name}': names holding "
                             f"'{GENERATED_FUNCTION_SEPARATOR}' are reserved for generated code "
                             f"(a called kernel's generated functions are '<kernel>__fwd', "
                             f"'<kernel>__rev'...)")

    # statements ---------------------------------------------------------------------------------

    def _statements(self, stmts, loop):
        return _flatten(self._checked_statement(stmt, loop) for stmt in stmts)

    def _checked_statement(self, stmt, loop):
        """``stmt`` fenced, after the asserts of shapes that its sparse matrices need
        (:attr:`SparseMatrices.checks`); the statements of a nested block take their own."""
        outer, self.matrices.checks = self.matrices.checks, []
        fenced = self._statement(stmt, loop)
        checks, self.matrices.checks = self.matrices.checks, outer
        for check in checks:
            check.test = self._expression(check.test)
        return checks + _flatten([fenced])

    def _statement(self, stmt, loop):
        if isinstance(stmt, gast.Assign):
            if len(stmt.targets) != 1:
                self._fail(stmt, "chained assignment 'a = b = ...' is not supported")
            target = stmt.targets[0]
            shape_bindings = self.matrices.definition(stmt)
            if shape_bindings is not None:  # a name for three arrays: its uses are rewritten
                self.generated_names.update(self.matrices.held_shapes)
                self.local_names.update(self.matrices.held_shapes)
                return [self._statement(binding, loop) for binding in shape_bindings]
            if isinstance(target, gast.Tuple):
                krylov = self.matrices.krylov(stmt.value)
                if krylov is not None:
                    return self._krylov_assignment(stmt, target, krylov)
                if isinstance(stmt.value, gast.Call):
                    return self._split_call(stmt, target)
                if isinstance(stmt.value, gast.Tuple):
                    return self._tuple_assignment(stmt, target)
                return self._shape_unpack(stmt, target)
            self._target(target)
            stmt.value = self._expression(stmt.value)
            return stmt
        if isinstance(stmt, gast.AugAssign):
            if not isinstance(stmt.op, _AUGOPS):
                self._fail(stmt, f"augmented assignment with '{_opname(stmt.op)}' is not supported")
            self._target(stmt.target)
            stmt.value = self._expression(stmt.value)
            return stmt
        if isinstance(stmt, gast.For):
            return self._for(stmt)
        if isinstance(stmt, gast.While):
            if stmt.orelse:
                self._fail(stmt, "'while ... else' is not supported")
            stmt.test = self._expression(stmt.test)
            stmt.body = self._statements(stmt.body, loop=True)
            return stmt
        if isinstance(stmt, gast.If):
            stmt.test = self._expression(stmt.test)
            stmt.body = self._statements(stmt.body, loop)
            stmt.orelse = self._statements(stmt.orelse, loop)
            return stmt
        if isinstance(stmt, (gast.Break, gast.Continue)):
            if not loop:
                self._fail(stmt, f"'{type(stmt).__name__.lower()}' outside a loop")
            return stmt
        if isinstance(stmt, gast.Pass):
            return stmt
        if isinstance(stmt, gast.Return):         # the last statement (early_returns)
            if isinstance(stmt.value, gast.Tuple):  # several values: a function's, inlined
                self._no_nesting(stmt, stmt.value.elts, "a function returns several values "
                                                        "as 'return a, b'")
                stmt.value.elts = [self._expression(elt) for elt in stmt.value.elts]
            elif stmt.value is not None:
                stmt.value = self._expression(stmt.value)
            return stmt
        if isinstance(stmt, gast.Expr):
            if isinstance(stmt.value, gast.Call):
                stmt.value = self._expression(stmt.value)
                if isinstance(stmt.value.func, gast.Name) and stmt.value.func.id in self.callees:
                    return stmt
            self._fail(stmt, "an expression statement must be a call of a user kernel")
        self._fail(stmt, f"the statement '{type(stmt).__name__}' is not supported by adsrc")

    def _split_call(self, stmt, target):
        """``Q, R = np.linalg.qr(A)``: one new local array per result, each computed by the
        rule of its part (see :class:`adsrc.rules.library.Split`)."""
        call = stmt.value
        if call.keywords:
            self._fail(call, "keyword arguments in calls are not supported")
        found = library.split_of(self._called_object(call))
        if found is None and self._user_function(call) is not None:
            return self._unpacked_call(stmt, target)
        if found is None:
            self._fail(stmt, "tuple assignment is supported only of a tuple of values "
                             "('a, b = b, a + b'), as 'n, m = array.shape', of a call of a "
                             "Python function returning several values ('s, q = stats(x)'), "
                             "and for library "
                             "functions returning several arrays, such as "
                             "'Q, R = np.linalg.qr(A)'")
        if len(target.elts) != len(found.parts) or not all(
                isinstance(elt, gast.Name) for elt in target.elts):
            self._fail(stmt, f"{library.spelled(found.function)} returns "
                             f"{len(found.parts)} arrays: assign them to as many names")
        if len(call.args) != 1 or not isinstance(call.args[0], gast.Name):
            self._fail(call, f"{library.spelled(found.function)} takes one array, by name")
        names = [elt.id for elt in target.elts]
        if len(set(names)) != len(names):
            self._fail(stmt, f"{library.spelled(found.function)} returns "
                             f"{len(found.parts)} arrays: assign them to distinct names")
        # Python calls once, then binds: a part bound to the argument's own name
        # ('A, R = np.linalg.qr(A)') goes last, so that every part factors the array passed
        bound = sorted(zip(target.elts, found.parts),
                       key=lambda part: part[0].id == call.args[0].id)
        argument = self._expression(call.args[0])
        parts = []
        for elt, function in bound:
            self._check_name(elt, elt.id)
            template = f"T = {RULES}.{library.lookup(function).name}(A)"
            parts += located(quote(template, T=elt.id, A=argument), stmt)
        return parts

    def _unpacked_call(self, stmt, target):
        """``a, b = f(x)`` of a user function returning several values: its caller gets its
        body (:mod:`adsrc.normalize.inline_calls`), and type inference checks the count."""
        self._no_nesting(stmt, target.elts, "the values of a function are unpacked as "
                                            "'a, b = f(...)'")
        for elt in target.elts:
            self._target(elt)
        stmt.value = self._expression(stmt.value)
        return stmt

    def _no_nesting(self, node, parts, form):
        if any(isinstance(part, (gast.Starred, gast.Tuple, gast.List)) for part in parts):
            self._fail(node, f"{form}: each a name or an element, with no nesting and no '*'")

    def _krylov_assignment(self, stmt, target, call):
        """``x, info = cg(A, b, rtol=...)``: ``x`` (a new local array, or the whole of an
        existing one, ``u[:]``) gets the solution, ``info`` 0 (adsrc's cg raises an error when
        it does not converge)."""
        solution, info = target.elts if len(target.elts) == 2 else (None, None)
        if not (isinstance(info, gast.Name)
                and isinstance(solution, (gast.Name, gast.Subscript))):
            self._fail(stmt, "write 'x, info = cg(A, b, rtol=...)' or "
                             "'u[:], info = cg(A, b, rtol=...)'")
        self._check_name(info, info.id)
        self._target(solution)
        call.args = [self._expression(arg) for arg in call.args]
        statements = quote(f"X = {RULES}.CALL\nINFO = 0", X=solution, INFO=info.id)
        statements[0].value = call
        return located(statements, stmt)

    def _tuple_assignment(self, stmt, target):
        """``a, b = b, a + b`` (and ``x[i], x[j] = x[j], x[i]``) as one temporary per value, then
        one assignment per target, in order: Python evaluates every value before it stores any.
        The temporaries' assignments are marked, so that type inference, which alone knows
        which names are arrays, gives a temporary holding a local array a copy of its values
        (a swap of local arrays copies values).

        But a name stored into elements (``y[:], x[:] = 2.0 * x, y``) is read at its store: the
        value Python evaluated first is the array, and the store copies what it holds then,
        after the stores before it (x takes the new y).  Unless a target before it rebinds the
        name: the value is then the array the name held first."""
        values = stmt.value.elts
        if len(values) != len(target.elts) or any(
                isinstance(node, (gast.Starred, gast.Tuple, gast.List))
                for node in values + target.elts):
            self._fail(stmt, "tuple assignment needs as many values as targets, each a name or "
                             "an element ('a, b = b, a + b'; no nesting and no '*')")
        temporaries, stores = [], []
        rebound = frozenset(elt.id for elt in target.elts if isinstance(elt, gast.Name))
        for position, (elt, value) in enumerate(zip(target.elts, values)):
            self._target(elt)
            if isinstance(elt, gast.Subscript) and isinstance(value, gast.Name) and all(
                    not (isinstance(before, gast.Name) and before.id == value.id)
                    for before in target.elts[:position]):
                stores.append(gast.Assign([elt], self._expression(value), None))
                continue
            held = f"_value{self.tuple_values}"
            self.tuple_values += 1
            self.local_names.add(held)
            temporary = gast.Assign([gast.Name(held, gast.Store(), None, None)],
                                    self._expression(value), None)
            temporary.adsrc_tuple_value = True
            temporary.adsrc_tuple_targets = rebound      # for lower_arrays' alias checks
            temporaries.append(temporary)
            stores.append(gast.Assign([elt], gast.Name(held, gast.Load(), None, None), None))
        for part in temporaries + stores:
            for node in gast.walk(part):          # errors point at the user's line
                if not hasattr(node, "lineno"):
                    gast.copy_location(node, stmt)
        return temporaries + stores

    def _shape_unpack(self, stmt, target):
        """``n, m = u.shape`` is accepted and split into one assignment per dimension."""
        value = stmt.value
        if not (isinstance(value, gast.Attribute) and value.attr == "shape"
                and all(isinstance(elt, gast.Name) for elt in target.elts)):
            self._fail(stmt, "tuple assignment is supported only of a tuple of values "
                             "('a, b = b, a + b') and as 'n, m = array.shape'")
        for elt in target.elts:
            self._check_name(elt, elt.id)
        self._expression(value.value)
        parts = []
        for dim, elt in enumerate(target.elts):
            index = gast.Subscript(value=gast.Attribute(value=value.value, attr="shape",
                                                        ctx=gast.Load()),
                                   slice=gast.Constant(value=dim, kind=None), ctx=gast.Load())
            part = gast.Assign(targets=[elt], value=index, type_comment=None)
            gast.copy_location(part, stmt)
            parts.append(part)
        return parts

    def _for(self, stmt):
        if stmt.orelse:
            self._fail(stmt, "'for ... else' is not supported")
        iterated = self._iterated_arrays(stmt)
        if iterated is not None:
            stmt = self._over_indices(stmt, *iterated)
        elif self._builtin(stmt.iter) in ("zip", "enumerate"):
            self._fail(stmt.iter, "zip and enumerate are supported over 1-D arrays given by name "
                                  "('for a, b in zip(x, y)', 'for i, v in enumerate(x)')")
        elif not isinstance(stmt.target, gast.Name):
            self._fail(stmt.target, "a for loop must bind a single name")
        else:
            self._check_name(stmt.target, stmt.target.id)
        if isinstance(stmt.iter, gast.Call) \
                and self._resolve_call(stmt.iter) == ("builtin", "reversed"):
            stmt.iter = self._reversed_range(stmt.iter)
        call = stmt.iter
        if isinstance(call, gast.Call) and isinstance(call.func, gast.Name) \
                and self._resolve_call(call) == ("builtin", "range") and 1 <= len(call.args) <= 3 \
                and not call.keywords:
            call.args = [self._expression(arg) for arg in call.args]
        else:
            if isinstance(call, gast.Call) \
                    and gast.unparse(call.func).strip().split(".")[-1] == "checkpointed":
                # The reverse mode of the kernel that holds the loop splits it off before the
                # fence (adsrc.frontend.outline); whatever reaches the marker here cannot use it.
                self._fail(call, f"'for {stmt.target.id} in {gast.unparse(call).strip()}': "
                                 "a checkpointed loop is supported only at the top level of "
                                 "the kernel given to adsrc.differentiate, grad, value_and_grad, "
                                 "check_grads, jvp, jacobian, hvp or hessian_operator (reverse "
                                 "mode, tangent mode and Hessian-vector products); not in a "
                                 "kernel called from another, as the step of "
                                 "adsrc.checkpointed(step), nor in offline generation: there, "
                                 "iterate over the range itself")
            self._fail(call, "for loops must iterate over range(start, stop, step), "
                             "reversed(range(...)), a 1-D array ('for v in x'), zip of "
                             "1-D arrays ('for a, b in zip(x, y)') or enumerate of either "
                             "('for i, v in enumerate(x)')")
        self.counters.append(stmt.target.id)
        stmt.body = self._statements(stmt.body, loop=True)
        self.counters.pop()
        return stmt

    def _over_indices(self, stmt, counter, pairs):
        """``for v in x`` (or ``for i, v in enumerate(x)``, ``for a, b in zip(x, y)``) as ``for i
        in range(len(x))`` (``range(min(len(x), len(y)))``: zip stops at the shortest) whose body
        starts with ``v = x[i]``: NumPy's iterator reads element i when trip i starts, as this
        does.  The reads are marked: over a 2-D array, whose iteration yields views of its rows,
        type inference refuses them (it alone knows the dimensions).  ``pairs``: (element name,
        array name) of each array iterated."""
        if counter is None:
            counter = gast.Name(f"_each{self.element_loops}", gast.Store(), None, None)
            self.local_names.add(counter.id)
        else:
            self._check_name(counter, counter.id)
        self.element_loops += 1
        reads = []
        for element, array in pairs:
            read = gast.Subscript(gast.Name(array.id, gast.Load(), None, None),
                                  gast.Name(counter.id, gast.Load(), None, None), gast.Load())
            read.adsrc_iterated = True
            reads.append(gast.Assign([element], read))
        lengths = [quote_expr("len(X)", X=array) for _, array in pairs]
        count = lengths[0] if len(lengths) == 1 else gast.Call(
            gast.Name("min", gast.Load(), None, None), lengths, [])
        loop = gast.For(counter, quote_expr("range(N)", N=count), reads + stmt.body, [], None)
        for node in gast.walk(loop):
            if not hasattr(node, "lineno"):
                gast.copy_location(node, stmt.iter)
        return loop

    def _iterated_arrays(self, loop):
        """``(counter or None, [(element, array), ...])`` names of ``for v in x``,
        ``for a, b in zip(x, y)``, or either in ``enumerate``; else None."""
        target, iterable = loop.target, loop.iter
        counter = None
        if self._builtin(iterable) == "enumerate" and len(iterable.args) == 1 \
                and isinstance(target, gast.Tuple) and len(target.elts) == 2 \
                and isinstance(target.elts[0], gast.Name):
            counter, target, iterable = target.elts[0], target.elts[1], iterable.args[0]
        if isinstance(iterable, gast.Name) and isinstance(target, gast.Name):
            return counter, [(target, iterable)]
        if self._builtin(iterable) == "zip" and iterable.args \
                and isinstance(target, gast.Tuple) and len(target.elts) == len(iterable.args) \
                and all(isinstance(item, gast.Name) for item in target.elts + iterable.args):
            return counter, list(zip(target.elts, iterable.args))
        return None

    def _builtin(self, node):
        """The name of the builtin ``node`` calls without keywords (``"zip"``), else None."""
        if not isinstance(node, gast.Call) or node.keywords:
            return None
        resolved = self._resolve_call(node)
        return resolved[1] if resolved is not None and resolved[0] == "builtin" else None

    def _spelled_otherwise(self, call, name):
        """``np.where(c, a, b)`` as ``a if c else b`` marked element-wise (lowering reads it
        element by element, and only the chosen element's reads are differentiated, as in
        NumPy's result); ``np.clip(a, lo, hi)`` as ``min(max(a, lo), hi)``; ``np.square(a)``
        as ``a ** 2``; ``np.isnan(a)``, ``np.isinf(a)`` and ``np.isfinite(a)`` (and
        ``math``'s) as comparisons of ``a`` and ``abs(a)``; ``np.sign(a)`` as a choice between
        1.0, -1.0 and ``a * 0.0`` (0 and, as in NumPy, NaN for NaN; its derivative is 0);
        ``np.maximum(a, b)`` as ``max(a, b) if b == b else b`` (a NaN kept, as in NumPy;
        ``np.minimum`` with min); ``np.remainder(a, b)`` (``np.mod``) as ``a % b`` and
        ``np.floor_divide(a, b)`` as ``a // b``, which NumPy computes as Python does; np.diag,
        np.roll, np.diff and np.outer as they are, for typing and lowering."""
        arity = intrinsics.SPELLED_OTHERWISE[name]
        if len(call.args) != arity:
            self._fail(call, f"np.{name} takes {arity} argument{'s' if arity > 1 else ''} here")
        if "np." + name in intrinsics.READ_BY_ELEMENT:
            call.func = _dotted("np", name)
            return call
        if name == "square":
            squared = gast.BinOp(call.args[0], gast.Pow(), gast.Constant(value=2, kind=None))
            return gast.copy_location(squared, call)
        if name in ("remainder", "floor_divide"):
            operator = gast.Mod() if name == "remainder" else gast.FloorDiv()
            return gast.copy_location(gast.BinOp(call.args[0], operator, call.args[1]), call)
        if name == "clip":
            value, low, high = call.args
            lower_bounded = gast.Call(gast.Name("max", gast.Load(), None, None), [value, low], [])
            clipped = gast.Call(gast.Name("min", gast.Load(), None, None),
                                [gast.copy_location(lower_bounded, call), high], [])
            return gast.copy_location(clipped, call)
        if name in ("maximum", "minimum"):
            # Python's max(a, b) is a when b is NaN; NumPy's is NaN when either is
            choice = quote_expr(f"{name[:3]}(A, B) if B == B else B", A=call.args[0],
                                B=call.args[1])
            located([choice], call)
            _mark_elementwise(choice)
            return choice
        if name in intrinsics.CLASS_TESTS:
            # no comparison with a NaN holds; the value is read once, as the call reads it
            test = {"isnan": "not abs(A) <= 1e309", "isinf": "abs(A) == 1e309",
                    "isfinite": "abs(A) < 1e309"}[name]
            return located([quote_expr(test, A=call.args[0])], call)[0]
        if name == "sign":
            choice = quote_expr("1.0 if A > 0.0 else (-1.0 if A < 0.0 else A * 0.0)",
                                A=call.args[0])
            located([choice], call)
            _mark_elementwise(choice)
            _mark_elementwise(choice.orelse)
            return choice
        test, chosen, otherwise = call.args
        choice = gast.copy_location(gast.IfExp(test=test, body=chosen, orelse=otherwise), call)
        _mark_elementwise(choice)
        return choice

    def _kept_dimension(self, call, keepdims):
        """``np.sum(u, axis=1, keepdims=True)`` as ``np.sum(u, 1)[:, None]`` (axis 0:
        ``[None, :]``), the new axis that broadcasting reads."""
        if not (isinstance(keepdims, gast.Constant) and isinstance(keepdims.value, bool)):
            self._fail(keepdims, "keepdims= takes the constant True or False")
        reduced = self._call(call)
        if not keepdims.value:
            return reduced
        axis = int_literal(reduced.args[1]) if len(reduced.args) == 2 else None
        if axis not in (0, 1, -1, -2):
            self._fail(call, "keepdims=True is supported along a constant axis, 0 or 1, of a "
                             "2-D array")
        whole, new = gast.Slice(None, None, None), gast.Constant(value=None, kind=None)
        index = gast.Tuple([whole, new] if axis % 2 else [new, whole], gast.Load())
        return located([gast.Subscript(reduced, index, gast.Load())], call)[0]

    def _reduces(self, call, resolved):
        """Whether a call is a reduction taking an axis: np.sum, np.mean, np.max, np.min or
        the same method of an array."""
        if resolved is not None:
            return resolved[0] == "np" and resolved[1] in intrinsics.AXIS_REDUCTIONS
        return self._is_method(call.func) and call.func.attr in intrinsics.AXIS_REDUCTIONS

    def _is_method(self, func):
        """Whether ``func`` is a method of an array: an attribute of a local name or of an
        expression that is not a module's attribute chain (``(A * A).sum``, ``A[0].dot``)."""
        if not isinstance(func, gast.Attribute):
            return False
        value = func.value
        if isinstance(value, gast.Name):
            return value.id in self.local_names
        return not isinstance(value, gast.Attribute)

    def _float_dtype(self, call, resolved):
        """Drop ``dtype=np.float64`` (or ``float``) from an allocation, which allocates float64
        whatever it is given; refuse every other keyword argument."""
        allocation = resolved is not None and resolved[0] == "np" \
            and resolved[1] in intrinsics.ALLOCATIONS + intrinsics.CONSTANT_ARRAYS
        for keyword in call.keywords:
            if not (allocation and keyword.arg == "dtype"):
                self._fail(call, "keyword arguments in calls are not supported (but dtype= of "
                                 "an allocation: np.zeros(n, dtype=np.float64))")
            value = keyword.value
            if isinstance(value, gast.Constant):                # dtype="float64"
                dtype = value.value
            elif isinstance(value, gast.Name) and value.id not in self.local_names:
                dtype = self.source.resolve(value.id)           # dtype=float
            else:
                dtype = self._module_attribute(value)           # dtype=np.float64
            if not any(dtype is known or (isinstance(dtype, str) and dtype == known)
                       for known in _FLOAT64):
                self._fail(keyword.value, "local arrays are float64: allocate them with "
                                          "dtype=np.float64 or without dtype= (index arrays are "
                                          "arguments of the kernel)")
        call.keywords = []

    def _reversed_range(self, call):
        """``reversed(range(a, b, s))`` as the range of the same numbers downwards:
        ``range(b - 1, a - 1, -1)`` for a step of 1, else from the last number of the range,
        ``a + (b - a - 1) // s * s`` (``b - a + 1`` for a negative s).  The bounds appear twice, so
        they may not call anything but ``len``; the step must be a constant."""
        inner = call.args[0] if len(call.args) == 1 and not call.keywords else None
        if not (isinstance(inner, gast.Call) and self._resolve_call(inner) == ("builtin", "range")
                and 1 <= len(inner.args) <= 3 and not inner.keywords):
            self._fail(call, "'reversed' is supported only as 'reversed(range(...))'")
        args = list(inner.args)
        start, stop = (gast.Constant(value=0, kind=None), args[0]) if len(args) == 1 \
            else (args[0], args[1])
        step = args[2] if len(args) == 3 else gast.Constant(value=1, kind=None)
        if isinstance(step, gast.UnaryOp) and isinstance(step.op, gast.USub) \
                and isinstance(step.operand, gast.Constant):
            step = gast.Constant(value=-step.operand.value, kind=None)
        if not (isinstance(step, gast.Constant) and type(step.value) is int and step.value):
            self._fail(call, "reversed(range(a, b, s)) needs a constant, non-zero step s")
        for bound in (start, stop):
            for node in gast.walk(bound):
                if isinstance(node, gast.Call) and self._resolve_call(node) != ("builtin", "len"):
                    self._fail(node, "in reversed(range(...)), compute a bound that calls a "
                                     "function into a variable first")
        if step.value == 1:
            down = quote_expr("range(B - 1, A - 1, -1)", A=start, B=stop)
        else:
            sign = 1 if step.value > 0 else -1
            down = quote_expr("range(A + (B - A - SIGN) // S * S, A - SIGN, -S)", A=start, B=stop,
                              S=step, SIGN=gast.Constant(value=sign, kind=None))
        down.func = inner.func
        for node in gast.walk(down):
            gast.copy_location(node, call)
        return down

    def _target(self, target):
        _merge_subscripts(target)
        if isinstance(target, gast.Name):
            self._check_name(target, target.id)
            return
        if isinstance(target, gast.Subscript) and isinstance(target.value, gast.Name):
            target.slice = self._index(_counted_from_the_end(target))
            return
        self._fail(target, "assignment targets must be a name or an element/slice 'a[i]' of an "
                           "array argument or local")

    # expressions --------------------------------------------------------------------------------

    def _index(self, index):
        if isinstance(index, gast.Tuple):
            index.elts = [self._index(elt) for elt in index.elts]
            return index
        if self._is_new_axis(index):        # x[:, None], x[np.newaxis, :]: broadcasting
            return gast.copy_location(gast.Constant(value=None, kind=None), index)
        if isinstance(index, gast.Slice):
            for part in ("lower", "upper", "step"):
                value = getattr(index, part)
                if value is not None:
                    setattr(index, part, self._expression(value))
            return index
        return self._expression(index)

    def _is_new_axis(self, index):
        """``None`` or ``np.newaxis`` in a subscript."""
        if isinstance(index, gast.Constant):
            return index.value is None
        return isinstance(index, gast.Attribute) and index.attr == "newaxis" \
            and self._module_attribute(index.value) is np

    def _expression(self, node):
        if isinstance(node, gast.Constant):
            if isinstance(node.value, (bool, int, float)):
                return node
            self._fail(node, f"the constant {node.value!r} is not supported in a kernel")
        if isinstance(node, gast.Name):
            return self._name(node)
        if isinstance(node, gast.BinOp):
            product = self.matrices.product(node)
            if product is not None:
                product.args = [self._expression(arg) for arg in product.args]
                return product
            if not isinstance(node.op, _BINOPS):
                self._fail(node, f"the operator '{_opname(node.op)}' is not supported")
            form = intrinsics.matrix_vector(node)
            if form is not None and form[1]:        # M.T @ v of a dense M
                node.left.value = self._name(node.left.value)
                node.right = self._expression(node.right)
                return node
            node.left = self._expression(node.left)
            node.right = self._expression(node.right)
            return node
        if isinstance(node, gast.UnaryOp):
            if not isinstance(node.op, _UNARY):
                self._fail(node, f"the operator '{_opname(node.op)}' is not supported")
            node.operand = self._expression(node.operand)
            return node
        if isinstance(node, gast.BoolOp):
            node.values = [self._expression(value) for value in node.values]
            return node
        if isinstance(node, gast.Compare):
            if not all(isinstance(op, _COMPARE) for op in node.ops):
                self._fail(node, "only the comparisons == != < <= > >= are supported")
            node.left = self._expression(node.left)
            node.comparators = [self._expression(value) for value in node.comparators]
            return node
        if isinstance(node, gast.IfExp):
            node.test = self._expression(node.test)
            node.body = self._expression(node.body)
            node.orelse = self._expression(node.orelse)
            return node
        if isinstance(node, gast.Subscript):
            _merge_subscripts(node)
            solution = self.matrices.krylov_solution(node)
            if solution is not None:
                solution.args = [self._expression(arg) for arg in solution.args]
                return solution
            if isinstance(node.value, gast.Attribute) and node.value.attr == "T" \
                    and isinstance(node.value.value, gast.Name):
                node = self._transposed_subscript(node)
            node.value = self._expression(node.value)
            node.slice = self._index(node.slice)
            if not isinstance(node.value, (gast.Name, gast.Attribute)) \
                    and not _adds_an_axis(node.slice):
                self._fail(node, "only subscripts of names ('a[i]', 'a.shape[0]') are "
                                 "supported, and new axes of expressions, "
                                 "'np.sum(E, axis=1)[:, None]'")
            node.slice = _counted_from_the_end(node)
            return node
        if isinstance(node, gast.Attribute):
            if node.attr in ("shape", "size", "T") and isinstance(node.value, gast.Name):
                node.value = self._name(node.value)
                return node
            constant = _inlined(self._module_attribute(node), node)      # np.pi, config.N
            if constant is not None:
                return constant
            if node.attr in ("shape", "size", "T"):
                transposed = isinstance(node.value, gast.Attribute) and node.value.attr == "T"
                self._fail(node, f"'.{node.attr}' is read of a name only, not of "
                                 f"'{gast.unparse(node.value).strip()}'" +
                           (" ('A.T.shape[0]' is 'A.shape[1]')" if transposed else ""))
            self._fail(node, f"the attribute '.{node.attr}' is not supported (only '.shape', "
                             "'.size', '.T' of a name, and numeric constants of modules such "
                             "as np.pi)")
        if isinstance(node, gast.Call):
            return self._call(node)
        self._fail(node, f"the expression '{type(node).__name__}' is not supported by adsrc")

    def _transposed_subscript(self, node):
        """``A.T[i, j]`` as ``A[j, i]``, and ``A.T[i, :]`` as ``A[:, i]``: adsrc differentiates
        the subscripts of names.  A subscript of ``A.T`` reached the generated code as it was
        written, read there but never differentiated: a derivative of 0, and no error."""
        index = node.slice
        if isinstance(index, gast.Tuple) and len(index.elts) == 2 \
                and not any(self._is_new_axis(elt) for elt in index.elts) \
                and not all(isinstance(elt, gast.Slice) for elt in index.elts):
            swapped = gast.Tuple(index.elts[::-1], gast.Load())
            return gast.copy_location(gast.Subscript(node.value.value, swapped, node.ctx), node)
        self._fail(node, "a subscript of '.T' takes two indices, one of them not a slice "
                         "('A.T[i, j]' is 'A[j, i]', 'A.T[i, :]' is 'A[:, i]'); write 'x[i]' "
                         "for a 1-D array, 'A[:, i]' for a column and 'A.T' for the whole "
                         "transpose")

    def _name(self, node):
        if self.matrices.uses(node.id):
            self.matrices.refuse(node)
        if node.id in self.local_names:
            return node
        if node.id in self.source.fn.__code__.co_freevars:
            self._fail(node, f"'{node.id}' is a variable of an enclosing function, which adsrc "
                             "does not read: pass it as an argument, or make it a module "
                             "constant")
        constant = _inlined(self.source.resolve(node.id), node)
        if constant is None:
            self._fail(node, f"the global name '{node.id}' is not supported here: kernels may "
                             "read their arguments, locals and numeric module constants")
        return constant

    def _resolve_call(self, call):
        """Canonical ``(namespace, name)`` of a call's library function, or None."""
        obj = self._called_object(call)
        return intrinsics.canonical(obj) if obj is not None else None

    def _check_count(self, call, resolved):
        """Refuse arguments the canonical spelling would drop: a NumPy function's out array
        (``np.power(x, 2.0, y)``, ``np.sqrt(x, y)``), ``pow``'s modulus, a second argument of
        an elementary function (``math.log(x, 2.0)``, a base)."""
        called = self._called_object(call)
        spelled = library.spelled(called)
        if isinstance(called, np.ufunc) and len(call.args) > called.nin:
            self._fail(call, f"{spelled} is called with {len(call.args)} arguments: it takes "
                             f"{called.nin}, then its out array, which adsrc does not "
                             f"support; assign the result instead ('y[:] = ...')")
        namespace, name = resolved
        counts = {"pow": 2, "abs": 1, **{fn: intrinsics.ELEMENTARY_ARITY.get(fn, 1)
                                         for fn in intrinsics.ELEMENTARY}}
        if namespace in ("math", "builtin") and name in counts \
                and len(call.args) != counts[name]:
            self._fail(call, f"{spelled} is called with {len(call.args)} argument(s); adsrc "
                             f"differentiates it with {counts[name]}"
                             + (" (write math.log(x) / math.log(b) for a logarithm to the "
                                "base b)" if name == "log" else ""))

    def _called_object(self, call):
        """The function a call names (``f``, ``np.linalg.solve``), or None when it is not a
        global name or an attribute chain through modules."""
        func = call.func
        if isinstance(func, gast.Name):
            if func.id in self.local_names:
                self._fail(call, f"'{func.id}' is a local variable, not a function")
            return self.source.resolve(func.id)
        return self._module_attribute(func)

    def _user_function(self, call):
        """The plain Python function a call names by a global name or through its module (the
        function an ``adsrc.differentiate`` object wraps, for one), which adsrc differentiates
        as it does the kernel; None for a library function, one with a derivative rule, or
        anything else."""
        if not isinstance(call.func, (gast.Name, gast.Attribute)) \
                or self._resolve_call(call) is not None:
            return None
        target = self._called_object(call)
        if target is None or library.lookup(target) is not None:
            return None
        target = getattr(target, "__wrapped_kernel__", target)
        if not isinstance(target, types.FunctionType) \
                or target.__module__.split(".")[0] in _LIBRARIES:
            return None
        return target

    def _calls_a_kernel(self, call):
        """Whether ``call`` calls a user kernel, which may write its arguments (a call of a
        local, the solve a factorisation made, is none)."""
        if isinstance(call.func, gast.Name) and call.func.id in self.local_names:
            return False
        return self._user_function(call) is not None

    def _called_by_name(self, call, target):
        """``call`` of the user function ``target``, by a name (:class:`Fence`)."""
        if isinstance(call.func, gast.Name):
            return call
        name = next((known for known, function in self.callees.items() if function is target),
                    None)
        if name is None:
            taken = {node.id for node in gast.walk(self.source.tree)
                     if isinstance(node, gast.Name)} | set(self.callees)
            name = free(target.__name__, taken)
        call.func = gast.copy_location(gast.Name(name, gast.Load(), None, None), call.func)
        return call

    def _module_attribute(self, node):
        """What the attribute chain ``node`` names through modules (``np.linalg.solve``,
        ``np.pi``), or None when it does not start at a global module."""
        chain = []
        while isinstance(node, gast.Attribute):
            chain.append(node.attr)
            node = node.value
        if not isinstance(node, gast.Name) or node.id in self.local_names:
            return None
        obj = self.source.resolve(node.id)
        for attr in reversed(chain):
            if not isinstance(obj, types.ModuleType):
                return None
            obj = getattr(obj, attr, None)
        return obj

    def _call(self, call):
        solve = self.matrices.solve(call)
        if solve is not None:
            solve.args = [self._expression(arg) for arg in solve.args]
            return solve
        resolved = self._resolve_call(call)
        if self._reduces(call, resolved):
            # np.sum(u, axis=1) as np.sum(u, 1): lowering reads the axis from the arguments
            call.args += [keyword.value for keyword in call.keywords if keyword.arg == "axis"]
            keepdims = [keyword.value for keyword in call.keywords if keyword.arg == "keepdims"]
            call.keywords = [keyword for keyword in call.keywords
                             if keyword.arg not in ("axis", "keepdims")]
            if keepdims:
                return self._kept_dimension(call, keepdims[0])
        if call.keywords:
            self._float_dtype(call, resolved)
        func = call.func
        if self._is_method(func) and func.attr in _METHODS \
                and len(call.args) in _METHODS[func.attr]:
            # x.copy(), x.sum(), (A * A).sum(1), A[0].dot(y): NumPy's methods, spelled as its
            # functions
            function = gast.Call(func=_dotted("np", func.attr), args=[func.value] + call.args,
                                 keywords=[])
            return self._call(gast.copy_location(function, call))
        if resolved in (("np", "zeros"), ("np", "empty"), ("np", "ones"), ("np", "full")) \
                and call.args and isinstance(call.args[0], gast.Tuple):
            call.args[0].elts = [self._expression(elt) for elt in call.args[0].elts]
            call.args[1:] = [self._expression(arg) for arg in call.args[1:]]
        else:
            call.args = [self._expression(arg) for arg in call.args]
        if resolved is not None:
            namespace, name = resolved
            self._check_count(call, resolved)
            if name in ("range", "reversed", "zip", "enumerate"):
                self._fail(call, f"'{name}' is supported only as the iterable of a for loop "
                                 "('for i in range(...)', 'for i in reversed(range(...))', "
                                 "'for a, b in zip(x, y)', 'for i, v in enumerate(x)')")
            if name in intrinsics.SPELLED_OTHERWISE:
                return self._spelled_otherwise(call, name)
            if namespace == "math" and name in intrinsics.ROUNDINGS:
                # math.floor(x) is an int, as int(np.floor(x)) is (for a finite x)
                rounded = gast.copy_location(gast.Call(_dotted("np", name), call.args, []), call)
                return gast.copy_location(
                    gast.Call(gast.Name("int", gast.Load(), None, None), [rounded], []), call)
            spelled = intrinsics.spelled(namespace, name)
            head, _, tail = spelled.rpartition(".")
            call.func = _dotted(head, tail) if head else gast.Name(tail, gast.Load(), None, None)
            if name in ("min", "max") and len(call.args) > 2:
                # max(a, b, c) as max(max(a, b), c): the first of equal values, as in Python
                folded = call.args[0]
                for arg in call.args[1:]:
                    folded = gast.copy_location(gast.Call(func=gast.Name(name, gast.Load(),
                                                                         None, None),
                                                          args=[folded, arg], keywords=[]), call)
                return folded
            return call
        rule = library.lookup(self._called_object(call))
        if rule is not None:
            named, rest = library.forward_parameters(rule)
            if len(call.args) < len(named) or (rest is None and len(call.args) > len(named)):
                self._fail(call, f"{library.spelled(rule.function)} is called here with "
                                 f"{len(call.args)} argument(s); its derivative rule takes "
                                 f"{len(named)}{' or more' if rest else ''} "
                                 f"({', '.join(named)}), so adsrc cannot differentiate this "
                                 f"call")
            call.func = _dotted(RULES, rule.name)
            return call
        target = self._user_function(call)
        if target is not None:
            call = self._called_by_name(call, target)
            self.callees[call.func.id] = target
            return call
        if self._is_method(func) and func.attr not in _METHODS:
            self._fail(call, f"the method '{func.attr}' of an array is not supported in a "
                             f"kernel (adsrc takes {', '.join(sorted(_METHODS))}); write what "
                             "it does with stores and NumPy's functions, as 'r[:] = 0.0' for "
                             "'r.fill(0.0)'")
        called = self._called_object(call)
        spelled = library.spelled(called) if callable(called) else gast.unparse(func).strip()
        if library.split_of(called) is not None:
            self._fail(call, f"{spelled} returns several arrays: assign them to as many names, "
                             "as in 'Q, R = np.linalg.qr(A)', then use them")
        self._fail(call, f"no derivative rule for {spelled}, called here: adsrc supports "
                         "math/NumPy elementary functions, the reductions np.dot, np.sum, "
                         "np.mean, np.max and np.min, allocation functions, calls of other "
                         "plain Python kernels, and functions with a derivative rule (declare "
                         "one with adsrc.rule)")


# NumPy methods a kernel may call on an array: name -> number of arguments
# NumPy's methods spelled as its functions, and the numbers of arguments they take here
_METHODS = {"copy": (0,), "dot": (1,), **{name: (0, 1) for name in intrinsics.AXIS_REDUCTIONS},
            **{name: (0,) for name in intrinsics.CUMULATIVE}}
_FLOAT64 = (float, np.float64, "float64", "float", "double", "f8", "d")


def _adds_an_axis(index):
    """Whether a (fenced) index is ``[:, None]`` or ``[None, :]``."""
    if not (isinstance(index, gast.Tuple) and len(index.elts) == 2):
        return False
    first, second = index.elts
    return new_axis(first) and _whole(second) or _whole(first) and new_axis(second)


def _whole(part):
    return isinstance(part, gast.Slice) and part.lower is None and part.upper is None \
        and part.step is None


def _mark_elementwise(choice):
    """Mark ``a if c else b`` from a NumPy function element-wise: typing then allows arrays in
    it, and lowering chooses element by element."""
    choice.adsrc_elementwise = choice.test.adsrc_elementwise = True


def _inlined(value, node):
    """A numeric global (a module constant, ``np.pi``) as the constant the fence writes in its
    place, an int as an int (a loop bound), located at ``node``; None for anything else."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    constant = gast.Constant(value=float(value) if isinstance(value, (float, np.floating))
                             else int(value), kind=None)
    return gast.copy_location(constant, node)


def check_plain_parameters(source):
    """Kernels take plain positional arguments; checked when a kernel is made differentiable
    too, so that a call is not first refused for its count of arguments."""
    args = source.tree.args
    if args.vararg or args.kwarg or args.kwonlyargs or args.defaults or args.posonlyargs:
        raise source.error(source.tree, "kernels take plain positional arguments only "
                                        "(no defaults, *args, **kwargs or keyword-only "
                                        "arguments)")


def check_entry_parameters(source):
    """A kernel made differentiable takes plain positional arguments, none of them named
    ``out``: ``out_bar=`` and ``out_dot`` are its return value's adjoint and tangent, so an
    array ``out`` could have neither (kernels it calls may name a parameter ``out``)."""
    check_plain_parameters(source)
    for arg in source.tree.args.args:
        if arg.id == "out":
            raise source.error(arg, "the parameter name 'out' is reserved in a kernel adsrc "
                                    "differentiates: out_bar= is the adjoint of its return "
                                    "value; rename the parameter (to 'y', say)")


def _flatten(results):
    """Statements from results that are statements or lists of them (a split assignment)."""
    out = []
    for result in results:
        out.extend(result if isinstance(result, list) else [result])
    return out


def _dotted(head, tail):
    return gast.Attribute(value=gast.Name(head, gast.Load(), None, None), attr=tail,
                          ctx=gast.Load())


def _opname(op):
    return type(op).__name__


def _merge_subscripts(node):
    """``a[i][j]`` as ``a[i, j]``, in place: the same element of a 2-D array, spelled the one way
    the rest of adsrc reads.  Not when the first index is a slice (``a[1:3][0]`` is row 1)."""
    if not isinstance(node, gast.Subscript):
        return
    inner = node.value
    if isinstance(inner, gast.Subscript) and isinstance(inner.value, gast.Name) \
            and not isinstance(inner.slice, (gast.Slice, gast.Tuple)) \
            and not isinstance(node.slice, gast.Tuple):
        node.value = inner.value
        node.slice = gast.Tuple([inner.slice, node.slice], gast.Load())


def _counted_from_the_end(subscript):
    """The index of ``a[...]`` with each constant negative element index ``-k`` spelled
    ``a.shape[d] - k``.  Why: compiled code does not wrap negative indices around (Cython's
    wraparound is off, as every index would pay a test), so ``x[-1]`` read before the array's
    start there, while Python reads the last element; constants are the indices adsrc can mend
    before compiling.  Slices are left to lower_arrays, which counts their constant negative
    bounds from the end itself."""
    index = subscript.slice
    if not isinstance(subscript.value, gast.Name):
        return index
    parts = index.elts if isinstance(index, gast.Tuple) else [index]
    mended = []
    dims = iter(range(len(parts)))          # the array's axes: a new axis (None) is none
    for part in parts:
        if not new_axis(part):
            dim = next(dims)
        if isinstance(part, gast.UnaryOp) and isinstance(part.op, gast.USub) \
                and isinstance(part.operand, gast.Constant) and type(part.operand.value) is int \
                and part.operand.value > 0:
            part = gast.copy_location(quote_expr("A.shape[D] - K", A=subscript.value,
                                                 D=gast.Constant(value=dim, kind=None),
                                                 K=part.operand), part)
            for node in gast.walk(part):
                gast.copy_location(node, subscript)
        mended.append(part)
    if isinstance(index, gast.Tuple):
        index.elts = mended
        return index
    return mended[0]
