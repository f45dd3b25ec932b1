"""Test problems for the adsrc corpus: small CSR matrices and random vectors.

Everything here is plain NumPy/SciPy and deterministic given a seeded
``np.random.Generator``.  CSR triples are returned as fresh, C-contiguous
arrays ``(indptr, indices, data)`` with sorted column indices, no duplicates
and an explicit diagonal entry in every row.
"""

import numpy as np
import scipy.sparse as sp

INT_DTYPES = (np.int32, np.int64)


def _csr_triple(a, int_dtype):
    a = sp.csr_matrix(a)
    a.sum_duplicates()  # also sorts the column indices of every row
    a.eliminate_zeros()  # kron stores explicit zeros; keep the true 5-point pattern
    a.sort_indices()
    assert a.has_sorted_indices
    indptr = np.ascontiguousarray(a.indptr, dtype=int_dtype)
    indices = np.ascontiguousarray(a.indices, dtype=int_dtype)
    data = np.ascontiguousarray(a.data, dtype=np.float64)
    return indptr.copy(), indices.copy(), data.copy()


def poisson2d_scipy(m):
    """The 2-D Poisson 5-point matrix (4 on the diagonal, -1 for the four
    neighbours, Dirichlet boundary) on an m x m grid, as a scipy CSR matrix."""
    t = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m))
    eye = sp.identity(m)
    return sp.csr_matrix(sp.kron(eye, t) + sp.kron(t, eye))


def poisson2d_csr(m, int_dtype=np.int32):
    """CSR triple (indptr, indices, data) of the m*m x m*m 2-D Poisson matrix."""
    return _csr_triple(poisson2d_scipy(m), int_dtype)


def lower_csr(m, int_dtype=np.int32):
    """Lower-triangular part (diagonal included) of the 2-D Poisson matrix.
    Diagonal 4, at most two -1 per row: diagonally dominant, well conditioned."""
    return _csr_triple(sp.tril(poisson2d_scipy(m), k=0, format="csr"), int_dtype)


def upper_csr(m, int_dtype=np.int32):
    """Upper-triangular part (diagonal included) of the 2-D Poisson matrix."""
    return _csr_triple(sp.triu(poisson2d_scipy(m), k=0, format="csr"), int_dtype)


def row_of_entries(indptr):
    """Row index of every stored entry (length nnz, int64)."""
    indptr = np.asarray(indptr, dtype=np.int64)
    return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))


def perturb_data(rng, indptr, indices, data, rel=0.3, diag_shift=1.0):
    """A non-symmetric, still diagonally dominant variant of a CSR matrix:
    off-diagonal entries scaled by (1 + rel*U(-1, 1)), diagonal entries
    increased by diag_shift*U(0, 1).  Returns a new data array."""
    rows = row_of_entries(indptr)
    is_diag = rows == np.asarray(indices, dtype=np.int64)
    out = np.array(data, dtype=np.float64, copy=True)
    nnz = len(out)
    out[~is_diag] *= 1.0 + rel * rng.uniform(-1.0, 1.0, nnz)[~is_diag]
    out[is_diag] += diag_shift * rng.uniform(0.0, 1.0, nnz)[is_diag]
    return out


def diagonal_of(indptr, indices, data):
    """Diagonal entries of a CSR matrix (0.0 where absent)."""
    n = len(indptr) - 1
    rows = row_of_entries(indptr)
    d = np.zeros(n)
    mask = rows == np.asarray(indices, dtype=np.int64)
    d[rows[mask]] = np.asarray(data)[mask]
    return d


def to_dense(indptr, indices, data, ncols=None):
    """Dense copy of a CSR matrix (square unless ncols is given)."""
    n = len(indptr) - 1
    ncols = n if ncols is None else ncols
    a = sp.csr_matrix(
        (np.asarray(data, dtype=np.float64), np.asarray(indices), np.asarray(indptr)),
        shape=(n, ncols),
    )
    return a.toarray()


def gather_csr(dense_bar, indptr, indices):
    """The entries of a dense (n x n) matrix at the stored positions of a CSR
    pattern: turns a dense matrix adjoint into the adjoint of ``data``."""
    rows = row_of_entries(indptr)
    return np.array(dense_bar[rows, np.asarray(indices, dtype=np.int64)], dtype=np.float64)


def random_vector(rng, n, low=-1.0, high=1.0):
    """Uniform random float64 vector."""
    return rng.uniform(low, high, n)


def random_normal(rng, shape):
    """Standard normal float64 array of the given shape."""
    return rng.standard_normal(shape)
