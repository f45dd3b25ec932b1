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

import contextlib
import re

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
    ``companions``, ``results`` and ``in_user_terms`` translate between the user's calls and
    its calls."""

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
            names = self._derived_names(arg.id)
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

    def companions(self, args, given, suffix):
        """The derived kernel's ``<name><suffix>`` keywords: ``_bar`` adjoints or ``_dot``
        directions.  A matrix's companion is a matrix with its format and pattern, passed on
        as its values: an adjoint's values array itself, so that the reverse sweep adds into
        the caller's matrix, as it adds into a caller's array.  The derived kernel's names of
        a matrix's arrays (``A_data_bar=``) are not the caller's: they are refused."""
        name = self.kernel.fn.__name__
        what = "adjoint" if suffix == "_bar" else "direction"
        out = dict(given)
        values = dict(zip(self.kernel.params, args))
        for param, layout in self.layouts.items():
            for key in out:
                if key.endswith(suffix) and key[:-len(suffix)] in self._derived_names(param):
                    raise ArgumentError(f"{name}: unexpected {what} '{key}'; the {what} of the "
                                        f"sparse matrix '{param}' is {param}{suffix}=, a "
                                        "matrix with its format and pattern")
            if param + suffix not in out:
                continue
            companion = out.pop(param + suffix)
            matrix = values[param]
            if not (is_sparse(companion) and companion.format == layout
                    and companion.shape == matrix.shape and all(
                        np.array_equal(getattr(companion, part), getattr(matrix, part))
                        for part in _PATTERN[layout])):
                raise ArgumentError(f"{name}: {param}{suffix} must be a sparse matrix with the "
                                    f"format and pattern of {param}")
            if suffix == "_bar":
                if companion.dtype != np.float64:
                    raise ArgumentError(f"{name}: {param}_bar must hold float64 values (the "
                                        f"adjoint is added into them), got {companion.dtype}")
                out[f"{param}_data_bar"] = companion.data
            else:
                out[f"{param}_data_dot"] = np.asarray(companion.data, dtype=np.float64)
        return out

    def _derived_names(self, param):
        return _arrays_of(param, self.layouts[param]) + [f"{param}_rows", f"{param}_columns"]

    @contextlib.contextmanager
    def in_user_terms(self):
        """Errors of the derived kernel's calls, in the caller's names: the companion of
        ``A_data`` is the caller's ``A_bar=`` (or ``A_dot=``), and ``A_data`` is ``A``."""
        try:
            yield
        except ArgumentError as error:
            text = str(error)
            for param in self.layouts:
                text = re.sub(rf"\b{param}_data_(bar|dot)\b", rf"{param}_\1", text)
                text = re.sub(rf"\b{param}_data\b", param, text)
            error.args = (text,)
            raise

    def results(self, args, results, given=None):
        """The user's gradients: for a matrix, the matrix passed as its ``_bar=`` (its values
        hold the gradient now), or a new one of the same class and pattern."""
        given = given or {}
        values = dict(zip(self.kernel.params, args))
        return tuple((given[param + "_bar"] if param + "_bar" in given
                      else self._like(values[param], result)) if param in self.layouts
                     else result
                     for param, result in zip(self.kernel.wrt, results))

    @staticmethod
    def _like(matrix, values):
        first, second = (np.array(getattr(matrix, part), copy=True)
                         for part in _PATTERN[matrix.format])
        if matrix.format == "coo":
            return type(matrix)((values, (first, second)), shape=matrix.shape)
        return type(matrix)((values, first, second), shape=matrix.shape)
