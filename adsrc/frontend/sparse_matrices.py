"""SciPy's spelling of sparse matrices inside a kernel, rewritten to the arrays adsrc differentiates.

A kernel may write::

    A = scipy.sparse.csr_matrix((data, indices, indptr), shape=(n, m))   # or csr_array, csc_...
    y[:] = A @ x
    z[:] = A.T @ y
    u[:] = scipy.sparse.linalg.spsolve(A, f)

``A`` is only another name for the three arrays (SciPy does not copy them either), so the fence
drops its definition and rewrites each use into the function of :mod:`adsrc.sparse` that takes
the arrays (``matvec``, ``rmatvec``, ``spsolve``; for a CSC matrix, whose arrays are the CSR
arrays of its transpose, ``rmatvec``, ``matvec``, ``spsolve_transposed``), whose derivative rules
then apply: the values ``data`` may be active.  Any other use of ``A`` is refused, as is a second definition.
"""

import gast
import scipy.sparse
import scipy.sparse.linalg

from adsrc.rules import library
from adsrc.rules import sparse as sparse_rules
from adsrc.rules.library import RULES

# constructor -> whether its arrays are A's rows (CSR) or A's columns (CSC: the CSR arrays of A^T)
_CONSTRUCTORS = {getattr(scipy.sparse, name): name.startswith("csc")
                 for name in ("csr_matrix", "csr_array", "csc_matrix", "csc_array")
                 if hasattr(scipy.sparse, name)}
# solve -> (its function on CSR arrays, on the CSR arrays of A^T)
_SOLVES = {id(scipy.sparse.linalg.spsolve): (sparse_rules.spsolve,
                                             sparse_rules.spsolve_transposed)}
_USES = "A @ x, A.T @ x and scipy.sparse.linalg.spsolve(A, b)"


def recognised(value):
    """Whether the fence rewrites a global (a constructor or a solve of SciPy's spelling): its
    meaning is then adsrc's, fixed by adsrc's own code."""
    return (callable(value) and value in _CONSTRUCTORS) or id(value) in _SOLVES


class SparseMatrices:
    """The sparse matrices a kernel builds, by name: ``name -> ((data, indices, indptr), shape,
    whether the arrays hold columns (CSC))``."""

    def __init__(self, source, called_object):
        self.source = source
        self.called_object = called_object      # call node -> the function it calls, or None
        self.matrices = {}

    def _fail(self, node, message):
        raise self.source.error(node, message)

    def defines(self, stmt):
        """Whether ``stmt`` builds a CSR matrix from arrays (then recorded, to be dropped)."""
        call = stmt.value
        constructor = self.called_object(call) if isinstance(call, gast.Call) else None
        if not (callable(constructor) and constructor in _CONSTRUCTORS):
            return False
        target = stmt.targets[0]
        parts = call.args[0].elts if len(call.args) == 1 \
            and isinstance(call.args[0], gast.Tuple) else []
        shape = [keyword.value for keyword in call.keywords if keyword.arg == "shape"]
        if not isinstance(target, gast.Name) or len(parts) != 3 \
                or not all(isinstance(part, gast.Name) for part in parts) \
                or len(call.keywords) != 1 or not shape \
                or not (isinstance(shape[0], gast.Tuple) and len(shape[0].elts) == 2):
            self._fail(stmt, "build a sparse matrix in a kernel as 'A = csr_matrix((data, "
                             "indices, indptr), shape=(n, m))' (or csc_matrix), with the three "
                             "arrays by name")
        if target.id in self.matrices:
            self._fail(stmt, f"the sparse matrix '{target.id}' is built twice: build it once "
                             "(it follows the changes of its arrays, as in SciPy)")
        self.matrices[target.id] = (parts, shape[0].elts, _CONSTRUCTORS[constructor])
        return True

    def uses(self, name):
        return name in self.matrices

    def refuse(self, node):
        self._fail(node, f"the sparse matrix '{node.id}' can only be used as {_USES} inside a "
                         "kernel")

    def product(self, node):
        """``A @ x`` or ``A.T @ x`` as a call of adsrc.sparse's matvec/rmatvec, or None."""
        if not isinstance(node.op, gast.MatMult):
            return None
        left, transposed = node.left, False
        if isinstance(left, gast.Attribute) and left.attr == "T":
            left, transposed = left.value, True
        if not (isinstance(left, gast.Name) and left.id in self.matrices):
            self._fail(node, f"'@' is supported for the products {_USES}")
        (data, indices, indptr), (rows, columns), by_columns = self.matrices[left.id]
        arrays = [gast.Name(part.id, gast.Load(), None, None) for part in (data, indices, indptr)]
        if transposed != by_columns:      # A.T @ x of CSR, A @ x of CSC (the CSR arrays of A^T)
            size = rows if by_columns else columns
            return self._call(sparse_rules.rmatvec, arrays + [node.right, size], node)
        return self._call(sparse_rules.matvec, arrays + [node.right], node)

    def solve(self, call):
        """``spsolve(A, b)`` as a call of adsrc.sparse.spsolve on A's arrays, or None."""
        functions = _SOLVES.get(id(self.called_object(call)))
        if functions is None:
            return None
        if len(call.args) != 2 or call.keywords or not (
                isinstance(call.args[0], gast.Name) and call.args[0].id in self.matrices):
            self._fail(call, "write 'spsolve(A, b)' with A a matrix built in the kernel")
        (data, indices, indptr), _, by_columns = self.matrices[call.args[0].id]
        arrays = [gast.Name(part.id, gast.Load(), None, None) for part in (data, indices, indptr)]
        return self._call(functions[by_columns], arrays + [call.args[1]], call)

    @staticmethod
    def _call(function, args, node):
        """The call of ``function``'s rule, as the fence spells rule calls (its arguments are
        left for the fence to check)."""
        func = gast.Attribute(gast.Name(RULES, gast.Load(), None, None),
                              library.lookup(function).name, gast.Load())
        return gast.copy_location(gast.Call(func=func, args=args, keywords=[]), node)
