"""SciPy sparse matrices passed to a kernel as arguments.

A kernel may take a sparse matrix ``A`` (CSR, CSC or COO; ``*_matrix`` or ``*_array``) and use
it as SciPy's spelling allows inside a kernel (``A @ x``, ``A.T @ x``, ``spsolve(A, b)``,
``splu(A)`` ..., see :mod:`adsrc.frontend.sparse_matrices`).  adsrc differentiates arrays, so for
each layout of matrix arguments it derives a kernel (:mod:`adsrc.frontend.derived`) that takes
the matrix's arrays and shape instead, ``A_data, A_indices, A_indptr, A_rows, A_columns``
(``A_data, A_row, A_col, ...`` for COO), and builds ``A`` from them first, as a kernel may.  A
call with matrices runs that kernel on the matrices' arrays (no copy).

``wrt`` may name a matrix: its derivative is taken with respect to its stored values, and the
gradient is a matrix of the same class and pattern whose values are the adjoints of ``A.data``
(a tangent ``A_dot=`` is such a matrix too).  A matrix is never an output: a kernel cannot
write it.
"""

import gast
import numpy as np

from adsrc.errors import ArgumentError, UnsupportedError
from adsrc.frontend.derived import derived_kernel, kernel_source
from adsrc.frontend.source import docstring_statements
from adsrc.runtime.arguments import is_sparse

_SPARSE = "_adsrc_scipy_sparse"      # the name the derived kernel's constructor call uses
_PATTERN = {"csr": ("indices", "indptr"), "csc": ("indices", "indptr"), "coo": ("row", "col")}


def layouts(params, args):
    """``((param, format), ...)`` for the arguments that are SciPy sparse matrices."""
    found = []
    for param, value in zip(params, args):
        if isinstance(value, (np.ndarray, float, int)):
            continue            # the usual arguments, let through without asking SciPy
        if is_sparse(value):
            if value.format not in _PATTERN:
                raise ArgumentError(f"argument '{param}': adsrc takes CSR, CSC and COO sparse "
                                    f"matrices, got {value.format.upper()} (convert it with "
                                    f".tocsr())")
            found.append((param, value.format))
    return tuple(found)


def _arrays_of(param, layout):
    return [f"{param}_data", *(f"{param}_{part}" for part in _PATTERN[layout])]


class MatrixKernel:
    """A differentiable kernel, specialised to take the arrays of its matrix arguments.

    ``inner`` is the :class:`~adsrc.api.Differentiable` of the derived kernel; ``arguments``,
    ``directions`` and ``results`` translate between the user's calls and its calls."""

    def __init__(self, kernel, matrix_layouts):
        from adsrc.api import Differentiable      # api builds on this module

        self.kernel = kernel
        self.layouts = dict(matrix_layouts)
        name = kernel.fn.__name__
        for param in kernel.outputs or ():
            if param in self.layouts:
                raise ArgumentError(f"{name}: the sparse matrix '{param}' cannot be an output "
                                    "(a kernel cannot write a matrix)")
        import scipy.sparse     # imported already: the arguments hold sparse matrices

        source = kernel_source(kernel.fn)
        self.inner = Differentiable(
            derived_kernel(source, self._derived_tree(source), {_SPARSE: scipy.sparse}),
            wrt=[f"{param}_data" if param in self.layouts else param for param in kernel.wrt],
            outputs=kernel.outputs, backend=kernel.backend)

    def _derived_tree(self, source):
        tree = source.tree
        taken = {node.id for node in gast.walk(tree) if isinstance(node, gast.Name)}
        params, definitions = [], []
        for arg in tree.args.args:
            layout = self.layouts.get(arg.id)
            if layout is None:
                params.append(arg)
                continue
            names = _arrays_of(arg.id, layout) + [f"{arg.id}_rows", f"{arg.id}_columns"]
            clash = taken.intersection(names)
            if clash:
                raise UnsupportedError(
                    f"the kernel names '{sorted(clash)[0]}', the name adsrc gives to an array "
                    f"of the sparse matrix argument '{arg.id}': rename it")
            params += [gast.copy_location(gast.Name(item, gast.Param(), None, None), arg)
                       for item in names]
            definitions.append(self._definition(arg, layout, names, tree))
        tree.args.args = params
        after = docstring_statements(tree.body)
        tree.body = tree.body[:after] + definitions + tree.body[after:]
        return tree

    @staticmethod
    def _definition(arg, layout, names, tree):
        """``A = csr_matrix((A_data, A_indices, A_indptr), shape=(A_rows, A_columns))`` (or
        COO's spelling), located at the kernel's ``def`` line."""
        data, first, second, rows, columns = names
        arrays = f"({data}, ({first}, {second}))" if layout == "coo" \
            else f"({data}, {first}, {second})"
        statement = gast.parse(f"{arg.id} = {_SPARSE}.{layout}_matrix({arrays}, "
                               f"shape=({rows}, {columns}))").body[0]
        for node in gast.walk(statement):
            if hasattr(node, "lineno"):
                gast.copy_location(node, tree)
        return statement

    def arguments(self, args):
        """The derived kernel's arguments: each matrix's arrays (views) and shape."""
        out = []
        for param, value in zip(self.kernel.params, args):
            layout = self.layouts.get(param)
            if layout is None:
                out.append(value)
                continue
            if value.dtype != np.float64:
                raise ArgumentError(f"{self.kernel.fn.__name__}: the sparse matrix '{param}' "
                                    f"must hold float64 values, got {value.dtype}")
            out += [value.data, *(getattr(value, part) for part in _PATTERN[layout]),
                    *value.shape]
        return out

    def directions(self, args, dots):
        """The derived kernel's ``_dot=`` keywords: a matrix's direction is a matrix with its
        pattern, given by its values."""
        out = dict(dots)
        values = dict(zip(self.kernel.params, args))
        for param, layout in self.layouts.items():
            direction = out.pop(f"{param}_dot", None)
            if direction is None:
                continue
            matrix = values[param]
            if not (is_sparse(direction) and direction.format == layout
                    and direction.shape == matrix.shape and all(
                        np.array_equal(getattr(direction, part), getattr(matrix, part))
                        for part in _PATTERN[layout])):
                raise ArgumentError(f"{self.kernel.fn.__name__}: {param}_dot must be a sparse "
                                    f"matrix with the format and pattern of {param}")
            out[f"{param}_data_dot"] = np.asarray(direction.data, dtype=np.float64)
        return out

    def results(self, args, results):
        """The user's gradients: a matrix of the same class and pattern for a matrix."""
        values = dict(zip(self.kernel.params, args))
        return tuple(self._like(values[param], result) if param in self.layouts else result
                     for param, result in zip(self.kernel.wrt, results))

    @staticmethod
    def _like(matrix, values):
        first, second = (np.array(getattr(matrix, part), copy=True)
                         for part in _PATTERN[matrix.format])
        if matrix.format == "coo":
            return type(matrix)((values, (first, second)), shape=matrix.shape)
        return type(matrix)((values, first, second), shape=matrix.shape)
