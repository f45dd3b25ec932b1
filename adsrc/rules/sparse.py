"""Sparse products and solves over the arrays of a matrix, with their rules.

Kernels hold a sparse matrix as its arrays, so that the matrix values are an ordinary float
array that can be active: CSR ``(data, indices, indptr)`` or COO triplets ``(data, row, col)``.
These functions build the SciPy matrix inside (the CSR ones are public as :mod:`adsrc.sparse`;
the fence rewrites SciPy's own spelling in a kernel into them, see
:mod:`adsrc.frontend.sparse_matrices`), and their rules give the adjoint of ``data`` on the
stored entries only, one value per entry: no dense matrix is ever formed.  A COO entry that
repeats a position is summed into it, as SciPy does, and gets the adjoint of that position.

The solves are differentiated implicitly (the derivative of the exact solution): the backward
part solves one transposed system ``A^T lam = u_bar``, then ``b_bar = lam`` and, for the stored
entry ``(i, j)``, ``data_bar = -lam[i] * u[j]``.  The direct solves factorise with SuperLU
(``splu``) and reuse that factorisation for the transposed solve; the latest factorisation is
also kept (one per thread) and reused by the next solve with the same matrix values, so a kernel
that solves with one matrix in a loop (or writes ``lu = splu(A)`` and ``lu.solve(b)``)
factorises once.  The Krylov solves do the transposed solve with the same method and tolerance
(see :class:`_Krylov`).

Functions named ``*_transposed`` solve with ``A^T``: SciPy's CSC arrays of A are the CSR arrays of
``A^T``.  COO triplets transpose by swapping ``row`` and ``col``.
"""

import threading

import numpy as np

from adsrc.errors import AdsrcError
from adsrc.rules.library import rule


def _scipy_sparse():
    """``scipy.sparse`` with its ``linalg``, imported by the first rule that runs, not with
    adsrc, whose import it would more than double (benchmarks/OVERHEAD.md)."""
    import scipy.sparse.linalg
    return scipy.sparse


class _Layout:
    """How two pattern arrays place a matrix's stored values."""

    def __init__(self, name, coordinates, matrix, solution_length):
        self.name = name
        self.coordinates = coordinates    # (first, second) -> (row of each entry, its column)
        self.matrix = matrix              # (data, first, second, shape) -> SciPy CSR matrix
        # a square solve's solution length, an expression of the parameters (data, first,
        # second, b): the shape of its rule (COO arrays do not say the matrix's size)
        self.solution_length = solution_length


def _row_of_entry(indptr):
    """The row of every stored entry of a CSR matrix."""
    return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))


def _csr_matrix(data, indices, indptr, shape):
    """SciPy's CSR matrix of the arrays, of ``shape``.  A column index outside it is refused
    (ValueError, as SciPy refuses an index pointer of the wrong length): SciPy does not check
    the indices, and its products then read and write past the end of their vectors, a heap
    corruption (a 5 x 6 matrix argument times a vector of 5)."""
    if len(indices) and not 0 <= indices.min() <= indices.max() < shape[1]:
        raise ValueError(f"a column index of the sparse matrix (from {indices.min()} to "
                         f"{indices.max()}) is outside its {shape[1]} columns (the length of the "
                         f"vector it multiplies or solves for)")
    return _scipy_sparse().csr_matrix((data, indices, indptr), shape=shape)


_CSR = _Layout("CSR", lambda indices, indptr: (_row_of_entry(indptr), indices), _csr_matrix,
               "second.shape[0] - 1")
_COO = _Layout("COO", lambda row, col: (row, col),
               lambda data, row, col, shape: _scipy_sparse().csr_matrix(
                   (data, (row, col)), shape=shape), "b.shape[0]")


# the types the rules take: a matrix's values and a vector (a product's or a solve's), any
# index arrays and sizes; a 2-D right-hand side (SciPy solves one column at a time) is refused
# at its line, before anything runs
_VALUES_AND_VECTOR = ("float64[:]", None, None, "float64[:]")


def _halves(args_and_dots):
    """A tangent part's arguments, split into the arguments and their tangents."""
    half = len(args_and_dots) // 2
    return args_and_dots[:half], args_and_dots[half:]


# products ------------------------------------------------------------------------------------------

def matvec(data, indices, indptr, x):
    """``A @ x`` for the CSR matrix ``A = (data, indices, indptr)`` with ``len(x)`` columns."""
    return _CSR.matrix(data, indices, indptr, (len(indptr) - 1, len(x))) @ x


def rmatvec(data, indices, indptr, x, columns):
    """``A.T @ x`` for the CSR matrix ``A = (data, indices, indptr)`` with ``columns``
    columns: SciPy refuses an ``x`` whose length is not its rows (its shape taken from ``x``
    failed on the index pointer instead)."""
    return _CSR.matrix(data, indices, indptr, (len(indptr) - 1, columns)).T @ x


def csr_matvec(data, indices, indptr, x, columns):
    """``A @ x`` for the CSR matrix ``A = (data, indices, indptr)`` declared with ``columns``
    columns: a kernel's ``A @ x`` of a ``csr_matrix(..., shape=(n, m))``, where SciPy refuses an
    ``x`` whose length is not m (:func:`matvec` takes its columns from ``x``)."""
    return _CSR.matrix(data, indices, indptr, (len(indptr) - 1, columns)) @ x


def coo_matvec(data, row, col, x, rows, columns):
    """``A @ x`` for the ``rows x columns`` COO matrix ``A = (data, (row, col))``."""
    return _COO.matrix(data, row, col, (rows, columns)) @ x


def _product_rule(function, layout, transposed, shape, length):
    """The rule of ``y = A @ x`` (``transposed``: ``y = A.T @ x``) for ``function(data, first,
    second, x, *size)``, where ``shape(first, second, x, *size)`` is A's and the expression
    ``length`` y's.  The adjoint of A is ``y_bar x^T`` (``x y_bar^T`` for the transposed
    product), on the stored entries."""

    def operator(values, first, second, x, size):
        matrix = layout.matrix(values, first, second, shape(first, second, x, *size))
        return matrix.T if transposed else matrix

    def entries(y_bar, x, first, second):
        rows, columns = layout.coordinates(first, second)
        return x[rows] * y_bar[columns] if transposed else y_bar[rows] * x[columns]

    def adjoints(data, first, second, x, size, y_bar):
        return (entries(y_bar, x, first, second), None, None,
                operator(data, first, second, x, size).T @ y_bar, *[None] * len(size))

    @rule(function, returns="float64[:]", shape=(length,), takes=_VALUES_AND_VECTOR)
    def forward(data, first, second, x, *size):
        return function(data, first, second, x, *size), (data, first, second, x, size)

    @forward.backward
    def backward(saved, y_bar):
        return adjoints(*saved, y_bar)

    @forward.tangent
    def tangent(*args_and_dots):
        (data, first, second, x, *size), (data_dot, _, _, x_dot, *_) = _halves(args_and_dots)
        return (function(data, first, second, x, *size),
                operator(data_dot, first, second, x, size) @ x
                + operator(data, first, second, x, size) @ x_dot)

    @forward.backward_tangent
    def backward_tangent(args, dots, y_bar, y_bar_dot):
        (data, first, second, x, *size), (data_dot, _, _, x_dot, *_) = args, dots
        data_bar, _, _, x_bar, *rest = adjoints(data, first, second, x, size, y_bar)
        tangents = (entries(y_bar_dot, x, first, second) + entries(y_bar, x_dot, first, second),
                    None, None,
                    operator(data_dot, first, second, x, size).T @ y_bar
                    + operator(data, first, second, x, size).T @ y_bar_dot, *rest)
        return (data_bar, None, None, x_bar, *rest), tangents

    return forward


_product_rule(matvec, _CSR, False, lambda indices, indptr, x: (len(indptr) - 1, len(x)),
              "second.shape[0] - 1")
_product_rule(rmatvec, _CSR, True, lambda indices, indptr, x, columns:
              (len(indptr) - 1, columns), "size[0]")
_product_rule(csr_matvec, _CSR, False, lambda indices, indptr, x, columns:
              (len(indptr) - 1, columns), "second.shape[0] - 1")
_product_rule(coo_matvec, _COO, False, lambda row, col, x, rows, columns: (rows, columns),
              "size[0]")


# solves --------------------------------------------------------------------------------------------

class _Direct:
    """Sparse LU (SuperLU): the factorisation serves the solve, its transpose and the tangents."""

    label = "spsolve"

    @staticmethod
    def prepare(matrix, options):
        return _factorised(matrix)

    @staticmethod
    def solve(factors, rhs, trans, label):
        return factors.solve(rhs, trans=trans)


class _Krylov:
    """SciPy's ``cg`` or ``gmres`` from zero to the relative residual ``rtol``, on A or A^T.

    The adjoint is implicit too: its transposed solve uses the same method and tolerance (cg on
    A^T, which is A for the symmetric matrices cg needs), so the gradient is that of the exact
    solution ``A^-1 b``, accurate to about the tolerance, not the derivative of the iterate SciPy
    returned.  For that derivative, write the iteration in the kernel (a fixed number of steps)
    and let adsrc unroll it.
    """

    def __init__(self, label):
        self.label = label          # the name of SciPy's function in scipy.sparse.linalg

    @staticmethod
    def prepare(matrix, options):
        (rtol,) = options
        return matrix, rtol          # the matrix may share ``data``: rule_calls copies if it changes

    def solve(self, prepared, rhs, trans, label):
        matrix, rtol = prepared
        # CSR, whatever the layout or transposition: its products gather and are the fastest
        # (CSC's scatter takes ~1.5x as long), and one conversion costs about ten products
        operator = (matrix if trans == "N" else matrix.T).tocsr()
        method = getattr(_scipy_sparse().linalg, self.label)
        u, info = method(operator, rhs, rtol=rtol, atol=0.0, maxiter=20 * len(rhs))
        if info != 0:
            raise AdsrcError(f"{label} did not reach the relative residual {rtol} "
                             f"(SciPy's info = {info})")
        return u


_CG = _Krylov("cg")
_GMRES = _Krylov("gmres")

_LATEST = threading.local()     # .factorisation: (CSC copy of the matrix, its SuperLU factors)


def _factorised(matrix):
    """SuperLU factors of ``matrix``, reused when the latest factorisation (of this thread) was
    of a matrix with the same pattern and values: checking costs O(nnz), far less than a
    factorisation.  It keeps one factorisation alive between calls."""
    csc = matrix.tocsc()
    latest = getattr(_LATEST, "factorisation", None)
    if latest is not None and _same_matrix(latest[0], csc):
        return latest[1]
    try:
        factors = _scipy_sparse().linalg.splu(csc)
    except RuntimeError as error:          # SuperLU: "Factor is exactly singular"
        raise AdsrcError(f"spsolve: the matrix is singular ({error})") from None
    _LATEST.factorisation = (csc, factors)
    return factors


def _same_matrix(a, b):
    return a.shape == b.shape and a.nnz == b.nnz and all(
        np.array_equal(getattr(a, part), getattr(b, part))
        for part in ("indptr", "indices", "data"))


def _solve(method, layout, trans, data, first, second, b, *options):
    """``u`` with ``A u = b`` (``trans`` "N") or ``A^T u = b`` (``trans`` "T"), and what solved
    it, ready for more solves with A."""
    b = np.asarray(b, dtype=float)
    prepared = method.prepare(layout.matrix(data, first, second, (len(b), len(b))), options)
    return prepared, method.solve(prepared, b, trans, method.label)


def spsolve(data, indices, indptr, b):
    """The solution ``u`` of ``A u = b`` for the square CSR matrix ``A = (data, indices,
    indptr)``, by a sparse LU factorisation."""
    return _solve(_Direct, _CSR, "N", data, indices, indptr, b)[1]


def spsolve_transposed(data, indices, indptr, b):
    """The solution ``u`` of ``A^T u = b`` for the square CSR matrix ``A = (data, indices,
    indptr)``: also ``A u = b`` for the CSC matrix with these arrays."""
    return _solve(_Direct, _CSR, "T", data, indices, indptr, b)[1]


def coo_spsolve(data, row, col, b):
    """The solution ``u`` of ``A u = b`` for the square COO matrix ``A = (data, (row, col))``."""
    return _solve(_Direct, _COO, "N", data, row, col, b)[1]


def cg(data, indices, indptr, b, rtol):
    """The solution of ``A u = b`` for a symmetric positive definite CSR matrix, by conjugate
    gradients (SciPy's) to the relative residual ``rtol``."""
    return _solve(_CG, _CSR, "N", data, indices, indptr, b, rtol)[1]


def cg_transposed(data, indices, indptr, b, rtol):
    """:func:`cg` with ``A^T`` (a CSC matrix's arrays)."""
    return _solve(_CG, _CSR, "T", data, indices, indptr, b, rtol)[1]


def coo_cg(data, row, col, b, rtol):
    """:func:`cg` for the COO matrix ``A = (data, (row, col))``."""
    return _solve(_CG, _COO, "N", data, row, col, b, rtol)[1]


def gmres(data, indices, indptr, b, rtol):
    """The solution of ``A u = b`` for a square CSR matrix, by restarted GMRES (SciPy's) to the
    relative residual ``rtol``."""
    return _solve(_GMRES, _CSR, "N", data, indices, indptr, b, rtol)[1]


def gmres_transposed(data, indices, indptr, b, rtol):
    """:func:`gmres` with ``A^T`` (a CSC matrix's arrays)."""
    return _solve(_GMRES, _CSR, "T", data, indices, indptr, b, rtol)[1]


def coo_gmres(data, row, col, b, rtol):
    """:func:`gmres` for the COO matrix ``A = (data, (row, col))``."""
    return _solve(_GMRES, _COO, "N", data, row, col, b, rtol)[1]


def _solve_rule(function, method, layout, trans):
    """The rule of ``function(data, first, second, b, *options)``, which solves ``A u = b``
    (``trans`` "N") or ``A^T u = b`` ("T") by ``method``.  The adjoint of A is ``-lam u^T``
    (``-u lam^T`` for ``A^T``), on the stored entries only."""
    adjoint_trans = "T" if trans == "N" else "N"
    label = f"the adjoint solve of {function.__name__}"

    def product(values, first, second, x, orientation):
        matrix = layout.matrix(values, first, second, (len(x), len(x)))
        return (matrix if orientation == "N" else matrix.T) @ x

    def entries(lam, u, first, second):
        rows, columns = layout.coordinates(first, second)
        return -u[rows] * lam[columns] if trans == "T" else -lam[rows] * u[columns]

    def adjoint_solve(prepared, rhs):
        lam = method.solve(prepared, rhs, adjoint_trans, label)
        if not np.all(np.isfinite(lam)):
            raise AdsrcError(f"{function.__name__}: the solve of the adjoint failed")
        return lam

    def tangent_solve(prepared, u, data_dot, first, second, b_dot):
        rhs = b_dot - product(data_dot, first, second, u, trans)
        return method.solve(prepared, rhs, trans, method.label)

    @rule(function, returns="float64[:]", shape=(layout.solution_length,),
          takes=_VALUES_AND_VECTOR)
    def forward(data, first, second, b, *options):
        prepared, u = _solve(method, layout, trans, data, first, second, b, *options)
        return u, (prepared, u, first, second, len(options))

    @forward.backward
    def backward(saved, u_bar):
        prepared, u, first, second, options = saved
        lam = adjoint_solve(prepared, u_bar)
        return (entries(lam, u, first, second), None, None, lam) + (None,) * options

    @forward.tangent
    def tangent(*args_and_dots):
        (data, first, second, b, *options), (data_dot, _, _, b_dot, *_) = \
            _halves(args_and_dots)
        prepared, u = _solve(method, layout, trans, data, first, second, b, *options)
        return u, tangent_solve(prepared, u, data_dot, first, second, b_dot)

    @forward.backward_tangent
    def backward_tangent(args, dots, u_bar, u_bar_dot):
        (data, first, second, b, *options), (data_dot, _, _, b_dot, *_) = args, dots
        prepared, u = _solve(method, layout, trans, data, first, second, b, *options)
        u_dot = tangent_solve(prepared, u, data_dot, first, second, b_dot)
        lam = adjoint_solve(prepared, u_bar)
        lam_dot = adjoint_solve(prepared, u_bar_dot - product(data_dot, first, second, lam,
                                                              adjoint_trans))
        rest = (None,) * len(options)
        return ((entries(lam, u, first, second), None, None, lam) + rest,
                (entries(lam_dot, u, first, second) + entries(lam, u_dot, first, second),
                 None, None, lam_dot) + rest)

    return forward


for _function, _method, _layout, _trans in [
        (spsolve, _Direct, _CSR, "N"), (spsolve_transposed, _Direct, _CSR, "T"),
        (coo_spsolve, _Direct, _COO, "N"),
        (cg, _CG, _CSR, "N"), (cg_transposed, _CG, _CSR, "T"), (coo_cg, _CG, _COO, "N"),
        (gmres, _GMRES, _CSR, "N"), (gmres_transposed, _GMRES, _CSR, "T"),
        (coo_gmres, _GMRES, _COO, "N")]:
    _solve_rule(_function, _method, _layout, _trans)
