"""SciPy's spelling of sparse matrices inside a kernel, rewritten to the arrays adsrc differentiates.

A kernel may write::

    A = scipy.sparse.csr_matrix((data, indices, indptr), shape=(n, m))   # or csr_array, csc_...
    K = scipy.sparse.coo_matrix((values, (row, col)), shape=(n, n))      # or coo_array
    y[:] = A @ x
    z[:] = A.T @ y
    u[:] = scipy.sparse.linalg.spsolve(A, f)
    u, info = scipy.sparse.linalg.cg(A, f, rtol=1e-10)    # or gmres; or cg(A, f, rtol=...)[0]
    lu = scipy.sparse.linalg.splu(A)                      # or solve = factorized(A)
    u[:] = lu.solve(f)                                    # lu.solve(f, trans="T"); solve(f)
    B = K.tocsr()                                         # .tocsc(), .tocoo()

A matrix built from arrays is only another name for them (SciPy does not copy them either), so
the fence drops its definition and rewrites each use into the function of
:mod:`adsrc.rules.sparse` that takes the arrays, whose derivative rules then apply: the values
may be active.  CSC arrays are the CSR arrays of the transpose, so a CSC product or solve uses
the transposed function; COO triplets transpose by swapping ``row`` and ``col``.

A factorisation (``splu``, ``factorized``) and a converted matrix (``.tocsr()`` ...) are copies:
SciPy's would not see a later change of the arrays, and adsrc's rewritten uses would.  So their
uses must follow them in the same block, and no statement from the definition to the last use
may write one of the arrays; otherwise the kernel is refused.  The factorisation itself is not
lost: the solve reuses the latest factorisation of the same matrix (:mod:`adsrc.rules.sparse`).

The rewritten uses take sizes from the arrays (the rows from the index pointer, a solve's size
from its right-hand side), so the declared ``shape`` is asserted where SciPy checks it, before
the statement that needs it (:attr:`SparseMatrices.checks`): a shape SciPy refuses is an error,
not a product or solve of the size the arrays imply.  SciPy reads the shape once, where the
matrix is built; a shape expression reading a name the kernel binds is therefore held in a
generated name there (``_shape0 = n``), which its uses read, so that binding ``n`` again later
does not change the matrix.

``cg``/``gmres`` start from zero, stop at the relative residual ``rtol`` (SciPy's default 1e-5
when not given) and raise an error when they do not reach it, so ``info`` is always 0 in a
kernel that goes on.  Any other use of a matrix or a factorisation is refused, as is a second
definition of the same name.
"""

import copy
import functools
import sys
from dataclasses import dataclass

import gast

from adsrc.frontend.intrinsics import matrix_vector
from adsrc.frontend.quoting import const, located, quote_expr, unparse
from adsrc.rules import library
from adsrc.rules import sparse as rules
from adsrc.rules.library import RULES

_CONVERSIONS = ("tocsr", "tocsc", "tocoo")
# what is solved -> (function on CSR arrays, the same with A^T, function on COO triplets)
_SOLVERS = {"direct": (rules.spsolve, rules.spsolve_transposed, rules.coo_spsolve),
            "cg": (rules.cg, rules.cg_transposed, rules.coo_cg),
            "gmres": (rules.gmres, rules.gmres_transposed, rules.coo_gmres)}
_DEFAULT_RTOL = 1e-5        # SciPy's default for cg and gmres
_USES = ("A @ x, A.T @ x, spsolve(A, b), cg/gmres(A, b, rtol=...), splu(A), factorized(A) "
         "and A.tocsr()/.tocsc()/.tocoo()")


_KINDS_IN_LINALG = (("krylov", ("cg", "gmres")), ("factorisation", ("splu", "factorized")),
                    ("spsolve", ("spsolve",)))


@functools.lru_cache(maxsize=None)
def _spellings(module_name):
    """{id(function): (kind, name)} of the SciPy functions in ``module_name`` that the fence
    rewrites: in ``scipy.sparse`` a "constructor" (name: the layout of its arrays); in
    ``scipy.sparse.linalg`` a "krylov" solve ("cg", "gmres"), a "factorisation" ("splu",
    "factorized") and "spsolve"."""
    module = sys.modules[module_name]
    if module_name == "scipy.sparse":
        return {id(getattr(module, f"{layout}_{kind}")): ("constructor", layout)
                for layout in ("csr", "csc", "coo") for kind in ("matrix", "array")
                if hasattr(module, f"{layout}_{kind}")}
    return {id(getattr(module, name)): (kind, name)
            for kind, names in _KINDS_IN_LINALG for name in names}


def _spelled(value, kind):
    """The name of the SciPy function ``value`` is if it is one of ``kind`` (see
    :func:`_spellings`), else None.  SciPy is not imported for it: while no module has imported
    the module holding ``kind``'s functions, no value can be one of them (importing
    ``scipy.sparse.linalg`` would add about 0.1 s to a cache hit of a kernel calling a helper,
    in a process that imported only ``scipy.sparse``)."""
    module_name = "scipy.sparse" if kind == "constructor" else "scipy.sparse.linalg"
    if module_name not in sys.modules:
        return None
    found = _spellings(module_name).get(id(value))
    return found[1] if found is not None and found[0] == kind else None


def recognised(value):
    """Whether the fence rewrites a global (a constructor or a function of SciPy's spelling):
    its meaning is then adsrc's, fixed by adsrc's own code."""
    return any(_spelled(value, kind) is not None
               for kind in ("constructor", "krylov", "factorisation", "spsolve"))


@dataclass(frozen=True)
class _Matrix:
    """A sparse matrix of the kernel: its three arrays (by name), its shape (expressions) and
    the layout of the arrays ("csr", "csc" or "coo")."""

    arrays: tuple
    shape: tuple
    layout: str

    def call(self, operation, transposed, args, node):
        """``operation`` ("product", or a key of ``_SOLVERS``) of this matrix (or its transpose)
        as a call of its function in :mod:`adsrc.rules.sparse`."""
        first, second = self.arrays[1:]
        if self.layout == "coo" and transposed:
            first, second = second, first
        arrays = [_load(self.arrays[0]), _load(first), _load(second)]
        if operation != "product":
            csr, csr_transposed, coo = _SOLVERS[operation]
            function = coo if self.layout == "coo" else \
                (csr_transposed if transposed != (self.layout == "csc") else csr)
            return _rule_call(function, arrays + args, node)
        # the lengths of the product's result and of its vector, as declared
        result, operand = (copy.deepcopy(self.shape[axis])
                           for axis in ((1, 0) if transposed else (0, 1)))
        if self.layout == "coo":
            return _rule_call(rules.coo_matvec, arrays + args + [result, operand], node)
        if transposed != (self.layout == "csc"):     # A.T @ x of CSR, A @ x of CSC
            return _rule_call(rules.rmatvec, arrays + args + [result], node)
        return _rule_call(rules.csr_matvec, arrays + args + [operand], node)


class SparseMatrices:
    """The sparse matrices and factorisations a kernel defines, by name."""

    def __init__(self, source, called_object, calls_a_kernel):
        self.source = source
        self.called_object = called_object      # call node -> the function it calls, or None
        self.calls_a_kernel = calls_a_kernel    # call node -> whether it calls a user kernel
        self.matrices = {}                      # name -> _Matrix
        self.factorisations = {}                # name -> (_Matrix, "splu" or "factorized")
        # asserts to run before the statement being fenced: the rewritten uses take sizes from
        # the arrays, so the declared shape is checked against them where SciPy checks it
        self.checks = []
        self.bound_names = {node.id for node in gast.walk(source.tree)
                            if isinstance(node, gast.Name) and isinstance(node.ctx, gast.Store)}
        self.held_shapes = []           # the generated names holding shapes (see the docstring)

    def _fail(self, node, message):
        raise self.source.error(node, message)

    # definitions -----------------------------------------------------------------------------------

    def definition(self, stmt):
        """The statements replacing ``stmt`` if it defines a matrix or a factorisation (then
        recorded): the bindings of its shape to generated names (see the module docstring),
        often none; None for any other statement.  The shape checks it needs are added to
        :attr:`checks`."""
        value, target = stmt.value, stmt.targets[0]
        matrix = self._matrix(value)
        kind = None
        if matrix is None and isinstance(value, gast.Call):
            kind = _spelled(self._called(value), "factorisation")
            if kind is not None:
                if len(value.args) != 1 or value.keywords:
                    self._fail(value, f"write '{kind}(A)' with a sparse matrix A of the kernel")
                matrix = self._operand(value.args[0], value)
                self._check_square(matrix, value)
        if matrix is None:
            return None
        if not isinstance(target, gast.Name):
            self._fail(stmt, "name a sparse matrix or factorisation by a plain name")
        if target.id in self.matrices or target.id in self.factorisations:
            self._fail(stmt, f"'{target.id}' is defined twice: define a sparse matrix or a "
                             "factorisation once (a matrix follows the changes of its arrays, "
                             "as in SciPy)")
        if kind is not None:
            self.factorisations[target.id] = (matrix, kind)
        elif _is_conversion(value):
            self.matrices[target.id] = matrix
        else:
            self._check_index_pointer(matrix, stmt)
            matrix, bindings = self._held(matrix, stmt)
            self.matrices[target.id] = matrix
            return bindings
        self._refuse_changes_while_used(stmt, target.id, matrix)
        return []

    def _held(self, matrix, stmt):
        """``matrix`` with each shape expression that reads a name the kernel binds replaced by
        a generated name, and the assignments binding those names, to run where it is built."""
        shape, bindings, held_as = [], [], {}
        for extent in matrix.shape:
            if not any(isinstance(node, gast.Name) and node.id in self.bound_names
                       for node in gast.walk(extent)):
                shape.append(extent)
                continue
            spelling = gast.dump(extent)
            if spelling not in held_as:       # shape=(n, n): one name, so it stays square
                held_as[spelling] = f"_shape{len(self.held_shapes)}"
                self.held_shapes.append(held_as[spelling])
                bindings += located([gast.Assign(
                    [gast.Name(held_as[spelling], gast.Store(), None, None)],
                    copy.deepcopy(extent), None)], stmt)
            shape.append(_load(held_as[spelling]))
        return _Matrix(matrix.arrays, tuple(shape), matrix.layout), bindings

    def _matrix(self, node):
        """The matrix an expression builds (a constructor call, a conversion of a matrix) or
        names, or None."""
        if isinstance(node, gast.Name):
            return self.matrices.get(node.id)
        if _is_conversion(node):
            return self._matrix(node.func.value)
        if not isinstance(node, gast.Call):
            return None
        layout = _spelled(self._called(node), "constructor")
        return None if layout is None else self._constructed(node, layout)

    def _called(self, call):
        """The function ``call`` calls, or None (also for the solve ``factorized`` made)."""
        if isinstance(call.func, gast.Name) and call.func.id in self.factorisations:
            return None
        return self.called_object(call)

    def _constructed(self, call, layout):
        spelling = ("'A = coo_matrix((data, (row, col)), shape=(n, m))'" if layout == "coo" else
                    f"'A = {layout}_matrix((data, indices, indptr), shape=(n, m))'")
        parts = call.args[0].elts if len(call.args) == 1 \
            and isinstance(call.args[0], gast.Tuple) else []
        if layout == "coo" and len(parts) == 2 and isinstance(parts[1], gast.Tuple):
            parts = [parts[0], *parts[1].elts]
        shape = [keyword.value for keyword in call.keywords if keyword.arg == "shape"]
        if len(parts) != 3 or not all(isinstance(part, gast.Name) for part in parts) \
                or len(call.keywords) != 1 or not shape \
                or not (isinstance(shape[0], gast.Tuple) and len(shape[0].elts) == 2):
            self._fail(call, f"build a sparse matrix in a kernel as {spelling}, with the "
                             "arrays by name and the shape given")
        return _Matrix(tuple(part.id for part in parts), tuple(shape[0].elts), layout)

    def _operand(self, node, call):
        matrix = self._matrix(node)
        if matrix is None:
            self._fail(call, "the matrix must be a sparse matrix built in the kernel (by name, "
                             "or a constructor call)")
        return matrix

    def _check(self, node, test, message):
        """An assert of ``test`` (an expression) before the statement being fenced."""
        self.checks += located([gast.Assert(
            test=test, msg=const(f"{self.source.place(node)}: {message} (SciPy raises "
                                 "ValueError here)"))], node)

    def _check_index_pointer(self, matrix, stmt):
        """The index pointer of CSR or CSC arrays must have the length the declared shape
        needs, as SciPy checks when it builds the matrix: the rewritten uses take the rows from
        the index pointer.  (SciPy checks COO indices against the declared shape in every
        rewritten use.)"""
        if matrix.layout != "coo":
            extent = matrix.shape[0 if matrix.layout == "csr" else 1]
            indptr = matrix.arrays[2]
            self._check(stmt, quote_expr("P.shape[0] == E + 1", P=_load(indptr), E=extent),
                        f"the index pointer '{indptr}' of a {matrix.layout.upper()} matrix of "
                        f"shape=({unparse(matrix.shape[0])}, {unparse(matrix.shape[1])}) must "
                        f"have {unparse(extent)} + 1 entries")

    def _solved(self, matrix, call, rhs):
        """``matrix``, which ``call`` solves with for the right-hand side ``rhs``, checked
        square and of ``rhs``'s size."""
        self._check_square(matrix, call)
        self._check_right_hand_side(matrix, call, rhs)
        return matrix

    def _check_square(self, matrix, call):
        """The rewritten solves and factorisations take the size from the right-hand side: a
        matrix declared ``(n, m)`` with n != m, which SciPy refuses to solve with, would be
        solved as a square one."""
        rows, columns = matrix.shape
        if gast.dump(rows) != gast.dump(columns):
            self._check(call, quote_expr("N == M", N=rows, M=columns),
                        "a solve needs a square matrix")

    def _check_right_hand_side(self, matrix, call, rhs):
        """The right-hand side of a solve must have as many entries as the matrix has rows, as
        SciPy checks: the rewritten solve takes its size from the right-hand side, and failed on
        the index pointer of CSR and CSC arrays instead ('index pointer size 6 should be 7'),
        or, with a COO matrix, solved a matrix of the wrong size.  Checked when it is a name."""
        if isinstance(rhs, gast.Name):
            self._check(call, quote_expr("B.shape[0] == N", B=_load(rhs.id), N=matrix.shape[0]),
                        f"the right-hand side '{rhs.id}' of a solve must have as many "
                        "entries as the matrix has rows")

    def _refuse_changes_while_used(self, stmt, name, matrix):
        """A copy (a factorisation, a conversion) must be used after it in its own block, with
        none of its arrays written from its definition to its last use (see the module
        docstring)."""
        line = self.source.location(stmt)[1]
        block, position = _block_of(self.source.tree, stmt)
        later = block[position + 1:]
        uses = {id(node): node for node in gast.walk(self.source.tree)
                if isinstance(node, gast.Name) and node.id == name
                and not isinstance(node.ctx, gast.Store)}
        using = [k for k, later_stmt in enumerate(later)
                 if any(id(node) in uses for node in gast.walk(later_stmt))]
        inside = {id(node) for k in using for node in gast.walk(later[k])}
        for use_id, use in uses.items():
            if use_id not in inside:
                self._fail(use, f"'{name}' is a copy made at line {line} (SciPy's "
                                "factorisations and conversions copy the arrays): use it only "
                                "after it, in the same block")
        last = max(using, default=-1)
        for between in later[:last + 1]:
            for node in gast.walk(between):
                written = _written_array(node, matrix.arrays, self.calls_a_kernel)
                if written is not None:
                    self._fail(node, f"'{written}' is written while '{name}' (line "
                                     f"{line}) still uses a copy of it: SciPy's copy "
                                     "would not see the change; make the copy after the last "
                                     "change of its arrays")

    # uses ------------------------------------------------------------------------------------------

    def uses(self, name):
        return name in self.matrices or name in self.factorisations

    def refuse(self, node):
        self._fail(node, f"the sparse matrix or factorisation '{node.id}' can only be used as "
                         f"{_USES} inside a kernel")

    def product(self, node):
        """``A @ x`` or ``A.T @ x`` of a sparse matrix of the kernel as a call of a product
        function; None for any other ``@`` (dense arrays: typing checks it and
        :mod:`adsrc.normalize.lower_arrays` lowers it)."""
        form = matrix_vector(node)
        if form is None or form[0].id not in self.matrices:
            return None
        matrix, transposed, vector = form
        return self.matrices[matrix.id].call("product", transposed, [vector], node)

    def solve(self, call):
        """A solve (``spsolve(A, b)``, ``lu.solve(b)``, ``solve(b)`` of ``factorized``) as a
        call of a solve function, or None when ``call`` is none of SciPy's solves."""
        factorised = self._factorised_solve(call)
        if factorised is not None:
            return factorised
        called = self.called_object(call)
        krylov = _spelled(called, "krylov")
        if krylov is not None:
            self._fail(call, f"{krylov} returns (x, info): write 'x, info = "
                             f"{krylov}(A, b, rtol=...)' or '{krylov}(A, b, "
                             "rtol=...)[0]'")
        if _spelled(called, "spsolve") is None:
            return None
        if len(call.args) != 2 or call.keywords:
            self._fail(call, "write 'spsolve(A, b)' with A a sparse matrix of the kernel")
        matrix = self._solved(self._operand(call.args[0], call), call, call.args[1])
        return matrix.call("direct", False, [call.args[1]], call)

    def _factorised_solve(self, call):
        func = call.func
        if isinstance(func, gast.Attribute) and isinstance(func.value, gast.Name) \
                and self.factorisations.get(func.value.id, (None, None))[1] == "splu":
            name = func.value.id
            trans = [keyword for keyword in call.keywords if keyword.arg == "trans"]
            if func.attr != "solve" or len(call.args) != 1 \
                    or len(call.keywords) != len(trans) or not all(
                        isinstance(keyword.value, gast.Constant)
                        and keyword.value.value in ("N", "T", "H") for keyword in trans):
                self._fail(call, f"write '{name}.solve(b)' or '{name}.solve(b, trans=\"T\")'")
            transposed = bool(trans) and trans[0].value.value != "N"
        elif isinstance(func, gast.Name) \
                and self.factorisations.get(func.id, (None, None))[1] == "factorized":
            name, transposed = func.id, False
            if len(call.args) != 1 or call.keywords:
                self._fail(call, f"write '{name}(b)'")
        else:
            return None
        matrix = self.factorisations[name][0]
        self._check_right_hand_side(matrix, call, call.args[0])
        return matrix.call("direct", transposed, [call.args[0]], call)

    def krylov(self, call):
        """``cg(A, b, rtol=...)`` or ``gmres(...)`` as the call of the function that returns
        its solution, or None when ``call`` is neither."""
        if not isinstance(call, gast.Call):
            return None
        method = _spelled(self._called(call), "krylov")
        if method is None:
            return None
        keywords = {keyword.arg: keyword.value for keyword in call.keywords}
        rtol = keywords.pop("rtol", gast.Constant(value=_DEFAULT_RTOL, kind=None))
        atol = keywords.pop("atol", None)
        if len(call.args) != 2 or keywords or (atol is not None and not (
                isinstance(atol, gast.Constant) and atol.value == 0)):
            self._fail(call, f"write '{method}(A, b, rtol=...)': adsrc's {method} starts from "
                             "zero and stops at the relative residual rtol (atol=0); other "
                             "options are not supported")
        matrix = self._solved(self._operand(call.args[0], call), call, call.args[1])
        return matrix.call(method, False, [call.args[1], rtol], call)

    def krylov_solution(self, subscript):
        """``cg(A, b, rtol=...)[0]`` as the call of the function that returns the solution,
        or None."""
        call = self.krylov(subscript.value)
        if call is None:
            return None
        if not (isinstance(subscript.slice, gast.Constant) and subscript.slice.value == 0):
            self._fail(subscript, "only the solution [0] of cg/gmres can be taken by index")
        return call


def _is_conversion(node):
    return isinstance(node, gast.Call) and isinstance(node.func, gast.Attribute) \
        and node.func.attr in _CONVERSIONS and not node.args and not node.keywords


def _block_of(tree, stmt):
    """The statement list holding ``stmt``, and its position there."""
    for node in gast.walk(tree):
        for field in ("body", "orelse"):
            block = getattr(node, field, None)
            if isinstance(block, list):
                for position, item in enumerate(block):
                    if item is stmt:
                        return block, position
    raise AssertionError("a statement of the kernel outside its tree")


def _written_array(node, arrays, calls_a_kernel):
    """The name among ``arrays`` that ``node`` (a statement or an expression) may write, or
    None: an assignment to it or to its elements, or a call of a user kernel that passes it or
    a part of it (a kernel may write its arguments), wherever the call is (``t = bump(data)``
    as well as ``bump(data)``)."""
    if isinstance(node, (gast.Assign, gast.AugAssign, gast.For)):
        targets = node.targets if isinstance(node, gast.Assign) else [node.target]
        for target in targets:
            for part in (target.elts if isinstance(target, gast.Tuple) else [target]):
                if _array_named(part) in arrays:
                    return _array_named(part)
    if isinstance(node, gast.Call) and calls_a_kernel(node):
        for arg in node.args + [keyword.value for keyword in node.keywords]:
            if _array_named(arg) in arrays:
                return _array_named(arg)
    return None


def _array_named(node):
    """The name of the array ``node`` is, or is a part of (``x``, ``x[i]``, ``x[1:]``), else
    None."""
    while isinstance(node, gast.Subscript):
        node = node.value
    return node.id if isinstance(node, gast.Name) else None


def _load(name):
    return gast.Name(name, gast.Load(), None, None)


def _rule_call(function, args, node):
    """The call of ``function``'s rule, as the fence spells rule calls (its arguments are left
    for the fence to check)."""
    func = gast.Attribute(_load(RULES), library.lookup(function).name, gast.Load())
    return gast.copy_location(gast.Call(func=func, args=args, keywords=[]), node)
