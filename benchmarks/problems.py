"""Shared benchmark problems: 2-D Poisson 5-point CSR matrices and the kernel specifications.

Every kernel is benchmarked on the same problem: an m x m grid, n = m*m unknowns, the 5-point
Laplacian (4 on the diagonal, -1 for the four neighbours) stored as CSR with int32 indices, sorted
column indices and an explicit diagonal.  The loss differentiated by every tool is

    L = <w, out_final>

where ``out`` is the array the kernel writes (``x`` for the smoothers and solves, ``y`` for the
products) and ``w`` a fixed random vector, so the adjoint seed is ``out_bar = w``.  The gradients
compared are those of the kernel's ``wrt`` arguments and, when the kernel has an ``x`` argument,
of the initial ``x``.
"""

import dataclasses

import numpy as np
import scipy.sparse as sp


def poisson_csr(m):
    """The 5-point Laplacian on an m x m grid, as (indptr, indices, data) with int32 indices."""
    tri = sp.diags([-1.0, 4.0, -1.0], [-1, 0, 1], shape=(m, m))
    off = sp.diags([-1.0, -1.0], [-1, 1], shape=(m, m))
    a = (sp.kron(sp.identity(m), tri) + sp.kron(off, sp.identity(m))).tocsr()
    a.sum_duplicates()
    a.sort_indices()
    return (np.ascontiguousarray(a.indptr, dtype=np.int32),
            np.ascontiguousarray(a.indices, dtype=np.int32),
            np.ascontiguousarray(a.data, dtype=np.float64))


@dataclasses.dataclass
class Problem:
    m: int
    n: int
    indptr: np.ndarray          # int32
    indices: np.ndarray         # int32
    data: np.ndarray            # float64
    dinv: np.ndarray            # 1 / diagonal (jacobi_damped)
    x0: np.ndarray              # initial iterate / right-hand side of the triangular solves
    b: np.ndarray               # right-hand side
    w: np.ndarray               # loss weights: L = <w, out_final>
    alpha: float
    omega_jacobi: float
    omega_sor: float
    sweeps: int
    # derived structure for the peers (computed once, outside every timing)
    rows: np.ndarray = None     # row of every stored entry (int64, length nnz)
    diag_pos: np.ndarray = None  # position in data of each row's diagonal (int64, length n)
    ell_pos: np.ndarray = None  # (n, K) positions in data of each row's entries, padded with 0
    ell_cols: np.ndarray = None  # (n, K) column of each entry, padded with the row itself
    ell_valid: np.ndarray = None  # (n, K) bool: a real entry

    @property
    def nnz(self):
        return len(self.data)

    def ell_mask(self, which):
        """(n, K) float mask of the padded row entries: "off" (j != i), "lower" (j < i),
        "upper" (j > i)."""
        row = np.arange(self.n)[:, None]
        cond = {"off": self.ell_cols != row, "lower": self.ell_cols < row,
                "upper": self.ell_cols > row}[which]
        return (self.ell_valid & cond).astype(np.float64)


def make_problem(m, sweeps=5, seed=0):
    indptr, indices, data = poisson_csr(m)
    n = m * m
    rng = np.random.default_rng(seed + m)
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    lengths = np.diff(indptr).astype(np.int64)
    k = int(lengths.max())
    offs = np.arange(k)[None, :]
    valid = offs < lengths[:, None]
    pos = np.where(valid, indptr[:-1, None].astype(np.int64) + offs, 0)
    cols = np.where(valid, indices[pos], np.arange(n)[:, None]).astype(np.int64)
    diag_pos = np.empty(n, dtype=np.int64)
    is_diag = indices == rows
    diag_pos[rows[is_diag]] = np.nonzero(is_diag)[0]
    return Problem(
        m=m, n=n, indptr=indptr, indices=indices, data=data,
        dinv=1.0 / data[diag_pos], x0=rng.standard_normal(n), b=rng.standard_normal(n),
        w=rng.standard_normal(n), alpha=0.8, omega_jacobi=2.0 / 3.0, omega_sor=1.5,
        sweeps=sweeps, rows=rows, diag_pos=diag_pos, ell_pos=pos, ell_cols=cols,
        ell_valid=valid)


@dataclasses.dataclass(frozen=True)
class KernelSpec:
    name: str
    params: tuple           # the kernel's parameter names, in order
    wrt: tuple              # adsrc wrt
    output: str             # the array the loss reads ("x" or "y")

    @property
    def compared(self):
        """Gradient keys every tool reports: the wrt names, plus the initial x."""
        keys = list(self.wrt)
        if "x" in self.params and "x" not in keys:
            keys.append("x")
        return tuple(keys)

    @property
    def scalar_param(self):
        for name in ("alpha", "omega"):
            if name in self.params:
                return name
        return None


_CSR = ("indptr", "indices", "data")

SPECS = [
    KernelSpec("jacobi_damped", _CSR + ("dinv", "x", "b", "alpha", "iters"),
               ("data", "b", "alpha"), "x"),
    KernelSpec("jacobi_csr", _CSR + ("x", "b", "omega", "iters"), ("data", "b", "omega"), "x"),
    KernelSpec("gauss_seidel", _CSR + ("x", "b", "sweeps"), ("data", "b"), "x"),
    KernelSpec("gauss_seidel_backward", _CSR + ("x", "b", "sweeps"), ("data", "b"), "x"),
    KernelSpec("gauss_seidel_symmetric", _CSR + ("x", "b", "sweeps"), ("data", "b"), "x"),
    KernelSpec("sor", _CSR + ("x", "b", "omega", "sweeps"), ("data", "b", "omega"), "x"),
    KernelSpec("spmv", _CSR + ("x", "y"), ("data", "x"), "y"),
    KernelSpec("spmv_transpose", _CSR + ("x", "y"), ("data", "x"), "y"),
    KernelSpec("lower_solve", _CSR + ("x",), ("data", "x"), "x"),
    KernelSpec("upper_solve", _CSR + ("x",), ("data", "x"), "x"),
]

SPEC_BY_NAME = {spec.name: spec for spec in SPECS}


def omega_for(spec, problem):
    return problem.omega_sor if spec.name == "sor" else problem.omega_jacobi


PAGE, CACHE_LINE = 4096, 64
_placements = np.random.default_rng(20261201)


def placed(values):
    """A float64 copy of ``values`` starting at a random cache-line offset within a 4 KiB page.

    Where a call's arrays lie relative to each other changes its time: a load whose address
    matches an earlier store's in the low 12 bits waits for it (4K aliasing).  The weighted
    Jacobi primal took 0.26 or 0.44 ms at 128x128 by where its copy of x lay relative to x.
    Arrays allocated afresh each round from a warm heap come back at the same addresses, so
    one tool could be lucky, or unlucky, for a whole run; placing the arrays a timed call
    writes anew each round spreads every tool over the same placements, and the median over
    the rounds is a typical one."""
    values = np.asarray(values, dtype=np.float64)
    shift = int(_placements.integers(PAGE // CACHE_LINE)) * CACHE_LINE // values.itemsize
    buffer = np.empty(values.size + PAGE // values.itemsize)
    out = buffer[shift:shift + values.size].reshape(values.shape)
    out[...] = values
    return out


def arguments(spec, problem):
    """Fresh positional arguments for one call (the mutated arrays are new copies, each at a
    random place: :func:`placed`)."""
    values = {
        "indptr": problem.indptr, "indices": problem.indices, "data": problem.data,
        "dinv": problem.dinv, "b": problem.b, "alpha": problem.alpha,
        "omega": omega_for(spec, problem), "iters": problem.sweeps, "sweeps": problem.sweeps,
    }
    out = []
    for name in spec.params:
        if name == "x":
            out.append(placed(problem.x0))
        elif name == "y":
            out.append(placed(np.zeros(problem.n)))
        else:
            out.append(values[name])
    return out


def primal_result(spec):
    """``result`` of a primal Case: a copy of the output array the kernel wrote."""
    index = spec.params.index(spec.output)
    return lambda args, _: {"out": np.array(args[index], copy=True)}


def scalar_value(spec, problem):
    name = spec.scalar_param
    if name == "alpha":
        return problem.alpha
    if name == "omega":
        return omega_for(spec, problem)
    return None


def max_rel_diff(reference, other, keys):
    """max over the keys of ||a - b||_inf / max(||a||_inf, tiny)."""
    worst = 0.0
    for key in keys:
        a = np.asarray(reference[key], dtype=np.float64)
        b = np.asarray(other[key], dtype=np.float64)
        if a.shape != b.shape:
            return float("inf")
        scale = max(float(np.max(np.abs(a))) if a.size else 0.0, 1e-300)
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        worst = max(worst, diff / scale)
    return worst
