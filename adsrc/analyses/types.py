"""Type inference: which names are int, float or bool scalars, and which are arrays (dtype, ndim).

Types come from the arguments of a call (like a JIT: one specialisation per signature) and are
propagated through the kernel to a fixed point.  The reverse transformation needs them to know
what can be active (floats only), what to push on which tape, and how to lower whole-array
statements into loops.  The one rewrite here needs the types too: a tuple assignment's temporary
holding a local array (``x, xn = xn, x``) is given a copy of its values, ``np.copy(xn)``.
"""

from dataclasses import dataclass

import gast
import numpy as np

from adsrc.errors import ArgumentError, SignatureError
from adsrc.frontend.intrinsics import (CUMULATIVE_CALLS, REDUCTION_CALLS, ROUNDING_CALLS,
                                       along_axis, matrix_vector, scaled_matrix)
from adsrc.frontend.quoting import int_literal, located, new_axis, quote_expr
from adsrc.rules import library
from adsrc.rules.library import RULES


@dataclass(frozen=True)
class Type:
    kind: str            # "int", "float", "bool", "array", "shape"
    dtype: str = ""      # arrays: "float64", "int32", "int64"
    ndim: int = 0

    def __post_init__(self):
        # every call looks its signature up among the compiled ones, hashing each Type: once
        # here, not every time
        object.__setattr__(self, "_hash", hash((self.kind, self.dtype, self.ndim)))

    def __hash__(self):
        return self._hash

    def __reduce__(self):
        """Pickled by its fields and made anew: a string's hash differs between processes, so
        the cached hash must not travel with it (the source-key cache pickles signatures)."""
        return Type, (self.kind, self.dtype, self.ndim)

    @property
    def is_array(self):
        return self.kind == "array"

    @property
    def is_float(self):
        """Float scalar or float array: the values that can carry derivatives."""
        return self.kind == "float" or (self.kind == "array" and self.dtype == "float64")

    @property
    def element(self):
        """The scalar type of one element of an array."""
        return FLOAT if self.dtype == "float64" else INT

    def __str__(self):
        if self.is_array:
            return f"{self.dtype}[{','.join(':' * self.ndim)}]"
        return self.kind


INT = Type("int")
FLOAT = Type("float")
BOOL = Type("bool")
SHAPE = Type("shape")
OBJECT = Type("object")     # generated temporaries holding what a derivative rule returns

_PRODUCTS = ("products of dense arrays are supported as M @ v, M.T @ v, v @ M, np.dot(M, v) and "
             "np.dot(v, M), with M the name of a 2-D array and v a 1-D array, as M @ B, M.T @ B "
             "and np.dot(M, B) with B a 2-D array, and as a @ b or np.dot(a, b) of two 1-D "
             "arrays")


@dataclass(frozen=True)
class Values:
    """The type of what a function returning several values returns (``return r, r @ r``):
    each value's type.  No name holds such a thing: the call's statement unpacks it,
    ``r, rr = residual(...)``, and its caller gets the function's body
    (:mod:`adsrc.normalize.inline_calls`)."""
    types: tuple
    kind = "values"
    is_array = False
    is_float = False


def array(dtype, ndim):
    return Type("array", dtype, ndim)


# the array types a kernel takes, by (dtype, ndim): every call looks its arrays up here, and
# comparing dtypes and building the Type each time was a third of a small call's overhead
_ARRAY_TYPES = {(np.dtype(dtype), ndim): array(dtype, ndim)
                for dtype in ("float64", "int32", "int64") for ndim in (1, 2)}


# the scalar types a kernel takes, by their Python class (bool counts as int, as in Python)
_SCALAR_TYPES = {float: FLOAT, int: INT, bool: INT, np.float64: FLOAT, np.int64: INT,
                 np.int32: INT, np.bool_: INT}


def usual_types(values):
    """The types of ``values`` when each is a NumPy array of a dtype and ndim that kernels
    take or a Python or NumPy float, int or bool: found in two tables, the cheap way every call
    starts.  None for anything else (subclasses of ndarray, sparse matrices, wrong dtypes...),
    which :func:`type_of_value` then types or refuses."""
    try:
        return tuple([_ARRAY_TYPES[value.dtype, value.ndim] if type(value) is np.ndarray
                      else _SCALAR_TYPES[type(value)] for value in values])
    except KeyError:
        return None


def type_of_value(value, what):
    """Type of a run-time argument value; ``what`` names it in errors."""
    if isinstance(value, np.ndarray) and not isinstance(value, np.memmap) \
            and type(value) is not np.ndarray:
        # np.matrix multiplies with '*', a masked array skips its masked values: the kernel
        # run by Python would compute otherwise than adsrc's code, which follows ndarray's
        raise ArgumentError(f"{what}: a {type(value).__name__}, a subclass of NumPy's ndarray "
                            f"whose operators or indexing differ from an ndarray's, which "
                            f"adsrc's code follows; pass np.asarray(value)")
    if isinstance(value, np.ndarray):
        found = _ARRAY_TYPES.get((value.dtype, value.ndim))
        if found is not None:
            return found
    if isinstance(value, (bool, np.bool_)):
        return INT
    if isinstance(value, (int, np.integer)):
        return INT
    if isinstance(value, float):        # np.float64 too
        return FLOAT
    if isinstance(value, np.floating):
        # Python's run of the kernel (and its finite differences) would compute in the
        # scalar's precision, where adsrc's code computes in double
        raise ArgumentError(f"{what}: floats must be Python floats or np.float64, as float "
                            f"arrays must be float64; got np.{type(value).__name__} (pass "
                            "float(value))")
    if isinstance(value, np.ndarray):
        if value.ndim not in (1, 2):
            raise ArgumentError(f"{what}: arrays of 1 or 2 dimensions are supported, "
                                f"got {value.ndim}")
        if value.dtype == np.float64:
            return array("float64", value.ndim)
        if value.dtype in (np.int32, np.int64):
            return array(str(value.dtype), value.ndim)
        raise ArgumentError(f"{what}: float arrays must be float64 and index arrays int32 or "
                            f"int64, got dtype {value.dtype}")
    if hasattr(value, "tocsr") and hasattr(value, "nnz"):        # a SciPy sparse matrix
        raise ArgumentError(f"{what}: a SciPy sparse matrix is taken by the kernel's primal, "
                            "adjoint, tangent, grad, value_and_grad, check_grads, jacobian, "
                            "hvp and hessian_operator, but not through a checkpointed loop; "
                            "here, pass its arrays (A.data, A.indices, A.indptr) and build "
                            "the matrix in the kernel")
    raise ArgumentError(f"{what}: expected a float, an int or a NumPy array, "
                        f"got {type(value).__name__}")


def parse_type(text):
    """A type from its printed form: ``int``, ``float``, ``float64[:]``, ``int32[:, :]``..."""
    text = text.strip().replace(" ", "")
    if text in ("int", "float"):
        return INT if text == "int" else FLOAT
    if "[" in text and text.endswith("]"):
        dtype, dims = text[:-1].split("[", 1)
        if dtype in ("float64", "int32", "int64") and dims in (":", ":,:"):
            return array(dtype, dims.count(":"))
    sparse = any(word in text.lower() for word in ("csr", "csc", "coo", "matrix", "sparse"))
    hint = ("; a SciPy matrix argument is taken in a process only, offline generation takes "
            "its arrays: write the kernel on its data, indices and indptr" if sparse else "")
    raise ArgumentError(f"cannot read the type {text!r}: write int, float, float64[:], "
                        f"int32[:], int64[:] or a 2-D form such as float64[:,:]{hint}")


def join(a, b):
    """The type of a name assigned values of types a and b."""
    if a is None or a == b:
        return b
    if b is None:
        return a
    if isinstance(a, Values) or isinstance(b, Values):
        if not (isinstance(a, Values) and isinstance(b, Values)) \
                or len(a.types) != len(b.types):
            return None
        types = tuple(join(x, y) for x, y in zip(a.types, b.types))
        return None if None in types else Values(types)
    if a.is_array or b.is_array:
        return None
    if FLOAT in (a, b):
        return FLOAT
    return INT


class TypeInference:
    """Infers ``self.env`` (name -> Type) for a kernel tree, given its parameter types.

    ``callee_return(name, arg_types)`` gives the return type of a called user kernel.
    ``returns_arrays``: the tree is a called function's, which may return an array or several
    values (its caller gets its body, :mod:`adsrc.normalize.inline_calls`); a kernel's value
    must be a scalar.
    """

    def __init__(self, source, tree, param_types, callee_return, returns_arrays=False):
        self.source = source
        self.tree = tree
        self.callee_return = callee_return
        self.returns_arrays = returns_arrays
        self.env = dict(zip(source.params, param_types))
        self.params = set(source.params)
        self.return_type = None

    def run(self):
        for _ in range(20):
            before = dict(self.env)
            self._block(self.tree.body)
            if before == self.env:
                return self.env
        return self.env

    def _fail(self, node, message):
        error = self.source.error(node, message)
        raise SignatureError(error.message + f" (argument types: {self._signature_text()})",
                             error.filename, error.line, error.col, error.source_line)

    def _signature_text(self):
        return ", ".join(f"{param}: {self.env.get(param)}" for param in self.source.params)

    def _assign(self, name_node, value_type, node):
        name = name_node.id
        old = self.env.get(name)
        if name in self.params and old is not None and old.is_array != (value_type or old).is_array:
            self._fail(node, f"'{name}' is an array argument and cannot be rebound")
        new = join(old, value_type)
        if new is None and old is not None and value_type is not None:
            self._fail(node, f"'{name}' is given both a scalar and an array value")
        self.env[name] = new

    def _block(self, stmts):
        for stmt in stmts:
            self._statement(stmt)

    def _statement(self, stmt):
        if isinstance(stmt, gast.Assign) and isinstance(stmt.targets[0], gast.Tuple):
            self._unpacked(stmt, stmt.targets[0])
        elif isinstance(stmt, gast.Assign):
            target = stmt.targets[0]
            value = self.expr(stmt.value)
            if value is not None and value.is_array and getattr(stmt, "adsrc_tuple_value", False) \
                    and isinstance(stmt.value, gast.Name):
                # a swap of local arrays, 'x, y = y, x': the temporary holds a copy of the values
                # (no name can tell that from swapping the arrays); arguments are refused in
                # adsrc.normalize.rebound_arguments
                stmt.value = located([quote_expr("np.copy(V)", V=stmt.value)], stmt)[0]
                stmt.value.adsrc_swapped_copy = True        # lower_arrays reads through it
            if isinstance(target, gast.Name):
                self._assign(target, value, stmt)
            else:
                self._check_store(target, value)
        elif isinstance(stmt, gast.AugAssign):
            value = self.expr(stmt.value)
            if isinstance(stmt.target, gast.Name):
                old = self.env.get(stmt.target.id)
                if old is not None and not old.is_array:
                    combined = FLOAT if isinstance(stmt.op, gast.Div) else join(old, value)
                    self._assign(stmt.target, combined, stmt)
            else:
                self._check_store(stmt.target, value)
        elif isinstance(stmt, gast.For):
            for arg in stmt.iter.args:
                self._expect_int(arg)
            self._assign(stmt.target, INT, stmt)
            self._block(stmt.body)
        elif isinstance(stmt, gast.While):
            self._condition(stmt.test)
            self._block(stmt.body)
        elif isinstance(stmt, gast.If):
            self._condition(stmt.test)
            self._block(stmt.body)
            self._block(stmt.orelse)
        elif isinstance(stmt, gast.Expr):
            stmt.value.adsrc_unpacked = True        # a call whose values are not used
            self.expr(stmt.value)
        elif isinstance(stmt, gast.Return) and isinstance(stmt.value, gast.Tuple):
            if not self.returns_arrays:
                self._fail(stmt, "kernels may return a scalar, not several values")
            kinds = tuple(self.expr(elt) for elt in stmt.value.elts)
            self.return_type = join(self.return_type, None if None in kinds else Values(kinds))
        elif isinstance(stmt, gast.Return) and stmt.value is not None:
            value = self.expr(stmt.value)
            if value is not None and value.is_array and not self.returns_arrays:
                self._fail(stmt, "kernels may return a scalar, not an array")
            self.return_type = join(self.return_type, value)

    def _unpacked(self, stmt, target):
        """``a, b = f(...)`` (the fence lets only calls of user functions through): each target
        gets the type of its value."""
        call = stmt.value
        call.adsrc_unpacked = True
        value = self.expr(call)
        if value is None:
            return
        count = len(value.types) if isinstance(value, Values) else "one"
        if count != len(target.elts):
            self._fail(stmt, f"'{call.func.id}' returns {count} value{'s' * (count != 'one')}, "
                             f"unpacked here into {len(target.elts)}")
        for elt, kind in zip(target.elts, value.types):
            if isinstance(elt, gast.Name):
                self._assign(elt, kind, stmt)
            else:
                self._check_store(elt, kind)

    def _check_store(self, target, value):
        index = target.slice
        if any(new_axis(part) for part in (index.elts if isinstance(index, gast.Tuple)
                                               else [index])):
            self._fail(target, "a new axis (None) in an assignment's target: store into the "
                               "array's own axes")
        target_type = self.expr(target)
        base = self.env.get(target.value.id)
        if base is None:
            return
        if not isinstance(index, (gast.Slice, gast.Tuple)) \
                and (self.expr(index) or INT).is_array:
            self._fail(target, "writing through an index array ('y[idx] = ...') is not "
                               "supported: with an index repeated NumPy keeps one of the values "
                               "(and 'y[idx] += v' adds once); write a loop over the indices")
        if not base.is_array:
            self._fail(target, f"'{target.value.id}' is not an array")
        if value is not None and value.is_float and base.dtype != "float64":
            self._fail(target, f"storing a float into the integer array '{target.value.id}'")
        if value is not None and value.is_array and target_type is not None \
                and not target_type.is_array:
            self._fail(target, "storing an array into a single element")

    def _expect_int(self, node):
        kind = self.expr(node)
        if kind is not None and kind not in (INT, BOOL):
            why = ""
            if kind == FLOAT and isinstance(node, gast.Name) and node.id in self.source.params:
                why = f": the argument '{node.id}' is a float in this call; pass an int"
            elif kind == FLOAT and any(isinstance(part, gast.BinOp)
                                       and isinstance(part.op, (gast.Div, gast.Pow))
                                       for part in gast.walk(node)):
                why = (" (in Python, '/' of ints and an int to a power that may be negative, "
                       "such as 2 ** k, give floats: int(...) makes an int of one)")
            elif kind == FLOAT:
                why = " (int(...) makes an int of one)"
            self._fail(node, f"expected an integer here, got {kind}{why}")

    def expr(self, node):
        """Type of an expression (None while unknown)."""
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            self._fail(node, f"unexpected expression {type(node).__name__}")
        return method(node)

    def _Constant(self, node):
        if isinstance(node.value, bool):
            return BOOL
        return INT if isinstance(node.value, int) else FLOAT

    def _Name(self, node):
        return self.env.get(node.id)

    def _Tuple(self, node):
        """Only the shape of np.zeros/np.empty is a tuple: integers."""
        for elt in node.elts:
            self._expect_int(elt)
        return None

    def _BinOp(self, node):
        if isinstance(node.op, gast.MatMult):
            return self._matrix_product(node)
        left, right = self.expr(node.left), self.expr(node.right)
        if left is None or right is None:
            return None
        if left.is_array or right.is_array:
            return self._elementwise(node, [left, right])
        if isinstance(node.op, gast.Div) or (isinstance(node.op, gast.Pow)
                                              and not _never_negative(node.right)):
            return FLOAT        # Python's 1 / 2 and 2 ** -1 are floats; so is 2 ** k, for a k < 0
        return FLOAT if FLOAT in (left, right) else INT

    def _matrix_product(self, node):
        """``M @ v`` and ``M.T @ v`` (M a 2-D array name, v a 1-D array): a 1-D array; ``M @ B``
        (B a 2-D array): a 2-D array; ``a @ b`` of two 1-D arrays: a float (desugaring makes it
        ``np.dot(a, b)``).  ``(s * M) @ v``, as Python reads ``s * M @ v``, with ``s`` a scalar:
        marked for desugaring to write ``s * (M @ v)``."""
        for factor, matrix, factor_first in scaled_matrix(node.left):
            kinds = self.expr(factor), self.expr(matrix)
            if None not in kinds and not kinds[0].is_array and kinds[1].is_array \
                    and kinds[1].ndim == 2:
                node.left.adsrc_factor_first = factor_first
                product = gast.BinOp(matrix, gast.MatMult(), node.right)
                return self._matrix_product(gast.copy_location(product, node))
        form = matrix_vector(node)
        transposed = form is not None and form[1]
        left = self.expr(form[0] if transposed else node.left)
        right = self.expr(node.right)
        if left is None or right is None:
            return None
        if transposed and left.is_array and left.ndim == 1:
            transposed = False                      # x.T is x
        if left.is_array and left.ndim == 2 and form is not None and right.is_array:
            return array("float64", right.ndim)     # M @ v, M @ B
        if left.is_array and left.ndim == 1 and not transposed and right.is_array:
            if right.ndim == 1:
                return FLOAT
            if matrix_vector(gast.BinOp(node.right, gast.MatMult(), node.left)) is not None:
                return array("float64", 1)          # v @ M (M.T), desugared to M.T @ v (M @ v)
        self._fail(node, _PRODUCTS)

    def _elementwise(self, node, kinds):
        """An element-wise operation of arrays and scalars: an array of the most dimensions of
        its operands', as NumPy broadcasts a 1-D array along the last axis of a 2-D one (their
        extents are checked at run time)."""
        arrays = [kind for kind in kinds if kind is not None and kind.is_array]
        return array("float64", max(kind.ndim for kind in arrays))

    def _UnaryOp(self, node):
        operand = self.expr(node.operand)
        return BOOL if isinstance(node.op, gast.Not) else operand

    def _check_rule_arguments(self, node, declared, kinds):
        """The arguments of a rule's call against the types its rule takes (``takes``)."""
        for position, (wanted, kind) in enumerate(zip(declared.takes or (), kinds)):
            if wanted is None or kind is None:
                continue
            wanted = parse_type(wanted)
            if (wanted.is_array, wanted.ndim if wanted.is_array else 0) != \
                    (kind.is_array, kind.ndim if kind.is_array else 0) \
                    or wanted.is_float != kind.is_float:
                argument = gast.unparse(node.args[position]).strip()
                self._fail(node.args[position],
                           f"{library.spelled(declared.function)}: adsrc's derivative rule "
                           f"takes '{argument}' as {wanted}, and it is {kind} here")

    def _condition(self, test):
        """The type of a condition; its 'and'/'or' may take numbers, by their truth."""
        for node in _truth_operators(test):
            node.adsrc_condition = True
        return self.expr(test)

    def _BoolOp(self, node):
        kinds = [self.expr(value) for value in node.values]
        if not getattr(node, "adsrc_condition", False) \
                and any(kind is not None and kind != BOOL for kind in kinds):
            spelled = "and" if isinstance(node.op, gast.And) else "or"
            self._fail(node, f"the value of '{spelled}' of numbers is one of its operands "
                             f"in Python, not a truth value: adsrc takes '{spelled}' of "
                             f"comparisons, or of numbers in the condition of an 'if', a "
                             f"'while' or 'a if c else b' only; write it as 'a if c else b'")
        return BOOL

    def _Compare(self, node):
        kinds = [self.expr(value) for value in [node.left] + node.comparators]
        if not any(kind is not None and kind.is_array for kind in kinds):
            return BOOL
        if not getattr(node, "adsrc_elementwise", False):
            self._fail(node, "comparisons of whole arrays are supported only as the condition "
                             "of np.where")
        return array("bool", self._elementwise(node, kinds).ndim)

    def _IfExp(self, node):
        """``a if c else b``; from ``np.where(c, a, b)`` (marked element-wise by the frontend)
        an array when any of the three is."""
        kinds = [self._condition(node.test), self.expr(node.body), self.expr(node.orelse)]
        if getattr(node, "adsrc_elementwise", False) \
                and any(kind is not None and kind.is_array for kind in kinds):
            return self._elementwise(node, kinds)
        if sum(kind is not None and kind.is_array for kind in kinds[1:]) == 1 \
                and None not in kinds[1:]:
            return self._elementwise(node, kinds)      # an array or a scalar, broadcast
        return join(kinds[1], kinds[2])

    def _Attribute(self, node):
        base = self.expr(node.value)
        if base is not None and not base.is_array:
            self._fail(node, f"'{node.value.id}' is not an array: it has no .{node.attr}")
        if node.attr == "T":
            return base         # the transpose of a 2-D array; a 1-D array's is itself
        return INT if node.attr == "size" else SHAPE

    def _Subscript(self, node):
        base = self.expr(node.value)
        if base is None:
            return None
        if base == SHAPE:
            self._expect_int(node.slice)
            return INT
        if not base.is_array:
            self._fail(node, f"'{gast.unparse(node.value).strip()}' is not an array")
        indices = node.slice.elts if isinstance(node.slice, gast.Tuple) else [node.slice]
        if any(new_axis(index) for index in indices):
            return self._broadcast(node, base, indices)
        if len(indices) > base.ndim:
            self._fail(node, f"index with {base.ndim} subscripts (one per dimension); "
                             f"got {len(indices)}")
        if len(indices) < base.ndim and getattr(node, "adsrc_iterated", False):
            self._fail(node, "a for loop over a 2-D array (over its rows) is not supported: "
                             "loop over range(u.shape[0]) and index u[i, j]")
        if len(indices) < base.ndim:
            # as in NumPy, the dimensions left out are whole: u[:] is u[:, :], u[i] the row
            # u[i, :].  Written out here, in this specialisation's own tree, the one place
            # that knows the dimensions before the normalisation reads the subscripts
            indices = indices + [gast.Slice(None, None, None)
                                 for _ in range(base.ndim - len(indices))]
            node.slice = gast.Tuple(indices, gast.Load())
        sliced = 0
        for index in indices:
            if isinstance(index, gast.Slice):
                sliced += 1
                self._expect_slice(index)
                continue
            kind = self.expr(index)
            if kind is not None and kind.is_array:
                return self._gathered(node, base, kind)
            self._expect_int(index)
        if sliced:
            return array(base.dtype, sliced)
        return base.element

    def _broadcast(self, node, base, indices):
        """``x[:, None]``, ``x[None, :]``: a 1-D array's elements along the axis its slice is
        on, the same for every index of the new axis (NumPy's broadcasting); lowering reads
        them so."""
        if len(indices) == 1:           # x[None] is x[None, :]
            indices = indices + [gast.Slice(None, None, None)]
            node.slice = gast.Tuple(indices, gast.Load())
        slices = [index for index in indices if isinstance(index, gast.Slice)]
        if base.ndim != 1 or len(indices) != 2 or len(slices) != 1:
            self._fail(node, "a new axis (None, np.newaxis) is supported on a 1-D array as "
                             "x[:, None] or x[None, :], to broadcast it along a 2-D array")
        self._expect_slice(slices[0])
        return array(base.dtype, 2)

    def _expect_slice(self, index):
        for part in (index.lower, index.upper, index.step):
            if part is not None:
                self._expect_int(part)

    def _reduction(self, node, func, args):
        """A reduction of arrays: a float, or, along an axis of a 2-D array expression
        (``np.sum(u, axis)``, axis 0 or 1, -1 and -2 counted from the end), a 1-D array."""
        reduces_an_axis = along_axis(node)
        if reduces_an_axis:
            if int_literal(node.args[1]) not in (0, 1, -1, -2):
                self._fail(node, f"{func}(u, axis) takes a constant axis, 0 or 1")
            if args[0] is not None and not (args[0].is_array and args[0].ndim == 2):
                self._fail(node, f"{func}(u, axis) is supported for a 2-D array u")
        else:
            for arg in args:
                if arg is not None and not arg.is_array:
                    self._fail(node, f"{func} takes arrays")
        if func in ("np.max", "np.min") and args and args[0] is not None \
                and args[0].dtype != "float64":
            self._fail(node, f"{func} is supported on float arrays")
        if reduces_an_axis:
            return array("float64", 1)
        if func == "np.dot" and len(args) == 2 and None not in args:
            if args[0].ndim == 2 and isinstance(node.args[0], gast.Name):
                return array("float64", args[1].ndim)   # np.dot(M, v) or np.dot(M, B): M @ ...
            if args[0].ndim == 1 and args[1].ndim == 2 and isinstance(node.args[1], gast.Name):
                return array("float64", 1)          # np.dot(v, M), a product M.T @ v
            if args[0].ndim != 1 or args[1].ndim != 1:
                self._fail(node, _PRODUCTS)
        return FLOAT

    def _gathered(self, node, base, index):
        """``x[idx]``: the elements of the 1-D array x at the integers of the 1-D array idx."""
        if index.dtype not in ("int32", "int64") or index.ndim != 1 or base.ndim != 1:
            self._fail(node, "an array index is supported as a 1-D integer array indexing a "
                             f"1-D array (x[idx]); here {base} is indexed by {index}")
        return array(base.dtype, 1)

    def _Call(self, node):
        func = gast.unparse(node.func).strip()
        if func == "np.diag":
            kind = self.expr(node.args[0])
            if not (isinstance(node.args[0], gast.Name) and kind is not None
                    and kind.is_array and kind.ndim == 2):
                self._fail(node, "np.diag is supported as the diagonal of a 2-D array named "
                                 "by the kernel, np.diag(A) (not building a matrix from a "
                                 "vector)")
            return array(kind.dtype, 1)
        args = [self.expr(arg) for arg in node.args]
        if func in ("min", "max") and len(args) == 1 and args[0] is not None \
                and args[0].is_array:
            self._fail(node, f"{func}() of one array is its {func}imum element: write "
                             f"np.{func}(x) (np.{func}imum and two arguments compare elements)")
        if func.startswith("math.") or func in ("abs", "min", "max", "pow") + ROUNDING_CALLS:
            if any(arg is not None and arg.is_array for arg in args):
                return self._elementwise(node, args)
            if func in ("abs", "min", "max"):
                result = None
                for arg in args:
                    result = join(result, arg)
                return result
            return FLOAT
        if func == "np.outer":
            if any(arg is not None and not (arg.is_array and arg.ndim == 1) for arg in args):
                self._fail(node, "np.outer(u, v) is supported for 1-D arrays u and v")
            return array("float64", 2)
        if func == "np.diff":
            kind = args[0]
            if not (isinstance(node.args[0], gast.Name) and kind is not None and kind.is_array
                    and kind.ndim == 1 and kind.dtype == "float64"):
                self._fail(node, "np.diff is supported on a 1-D float array named by the "
                                 "kernel, np.diff(x)")
            return kind
        if func == "np.roll":
            kind = args[0]
            if not (isinstance(node.args[0], gast.Name) and kind is not None and kind.is_array
                    and kind.ndim == 1):
                self._fail(node, "np.roll is supported on a 1-D array named by the kernel, "
                                 "np.roll(x, k)")
            self._expect_int(node.args[1])
            return kind
        if func in REDUCTION_CALLS:
            return self._reduction(node, func, args)
        if func in CUMULATIVE_CALLS:
            if len(args) != 1 or (args[0] is not None and not (
                    args[0].is_array and args[0].ndim == 1 and args[0].dtype == "float64")):
                self._fail(node, f"{func} is supported for one 1-D float array (no axis)")
            return array("float64", 1)
        if func in ("np.zeros", "np.empty", "np.ones", "np.full"):
            shape = node.args[0] if node.args else None
            if func == "np.full":
                if len(node.args) != 2 or (args[1] is not None and args[1].is_array):
                    self._fail(node, "np.full(shape, value) takes the shape and a scalar value")
            elif len(node.args) != 1:
                self._fail(node, f"{func}(shape) takes exactly the shape (float64 arrays only)")
            if isinstance(shape, gast.Tuple):
                ndim = len(shape.elts)
            elif isinstance(shape, gast.Attribute):        # np.zeros(u.shape)
                ndim = self.expr(shape.value).ndim
            else:
                ndim = 1
            if ndim not in (1, 2):
                self._fail(node, "arrays of 1 or 2 dimensions are supported")
            return array("float64", ndim)
        if func in ("np.zeros_like", "np.empty_like", "np.copy"):
            if len(args) != 1 or (args[0] is not None and not args[0].is_array):
                self._fail(node, f"{func} takes one array")
            return args[0]
        if func in ("np.ones_like", "np.full_like"):
            arity = 2 if func == "np.full_like" else 1
            if len(args) != arity or (args[0] is not None and not args[0].is_array) \
                    or (arity == 2 and args[1] is not None and args[1].is_array):
                self._fail(node, f"{func} takes one array" + (" and a scalar value"
                                                              if arity == 2 else ""))
            return None if args[0] is None else array("float64", args[0].ndim)
        if func == "np.eye":
            if len(args) != 1:
                self._fail(node, "np.eye(n) takes the number of rows (a square identity)")
            self._expect_int(node.args[0])
            return array("float64", 2)
        if func.startswith(RULES + "."):
            declared = library.by_name(func[len(RULES) + 1:])
            self._check_rule_arguments(node, declared, args)
            return declared.returns
        if func == "len":
            return INT
        if func == "float":
            return FLOAT
        if func == "int":
            return INT
        kind = self.callee_return(node, args)
        if isinstance(kind, Values) and not getattr(node, "adsrc_unpacked", False):
            self._fail(node, f"'{func}' returns {len(kind.types)} values: unpack them into as "
                             f"many names, 'a, b = {func}(...)'")
        return kind


class _ExpressionTypes(TypeInference):
    """The expression rules of :class:`TypeInference` over names whose types are known, for a
    backend printing generated functions (whose every name's type it has): no source, tree or
    parameters, so no call of the inference's own constructor."""

    def __init__(self, env):
        self.env = env
        self.callee_return = lambda call, arg_types: None

    def _fail(self, node, message):
        raise AssertionError(f"adsrc internal error: {message} (in generated "
                             f"'{gast.unparse(node).strip()}')")


def _truth_operators(test):
    """The 'and'/'or' nodes of a condition whose operands are taken by their truth: the
    condition's own, through 'not' and other 'and'/'or'."""
    if isinstance(test, gast.BoolOp):
        yield test
        for value in test.values:
            yield from _truth_operators(value)
    elif isinstance(test, gast.UnaryOp) and isinstance(test.op, gast.Not):
        yield from _truth_operators(test.operand)


def _never_negative(node):
    """Whether the int ``node`` is never negative, by its spelling (an int to such a power is
    an int): a constant >= 0, ``abs(...)``, ``len(...)``, an extent ``x.shape[d]``."""
    if isinstance(node, gast.Constant):
        return type(node.value) is int and node.value >= 0
    if isinstance(node, gast.Call) and isinstance(node.func, gast.Name):
        return node.func.id in ("abs", "len")
    return isinstance(node, gast.Subscript) and isinstance(node.value, gast.Attribute) \
        and node.value.attr == "shape"


def expression_type(node, env):
    """The type of the expression ``node`` whose names have the types ``env`` (None: not
    known, as for a called kernel's result)."""
    return _ExpressionTypes(env).expr(node)
