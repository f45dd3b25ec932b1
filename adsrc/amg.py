"""AMG cycles with trainable smoother weights, differentiated by adsrc itself.

``TrainableCycle(ml)`` takes a PyAMG hierarchy (``pyamg.ruge_stuben_solver``,
``pyamg.smoothed_aggregation_solver``, ...) and gives the final residual norm
``||b - A x_k||`` after ``k`` multigrid cycles, and its gradient with respect to the smoother
weights::

    cycle = adsrc.amg.TrainableCycle(ml, smoother="jacobi", cycle="V")
    weights = cycle.initial_weights()                    # shape (levels - 1, 2): pre, post
    loss, grad = cycle.value_and_grad(weights, b, x0, cycles=3)

There is no hand-written adjoint here.  The whole cycle is the plain-Python kernel
:func:`cycle_residual_norm` below, and adsrc differentiates it like any user kernel.  To pass
a hierarchy to a kernel, whose arguments are whole arrays and scalars, the levels are
flattened into one vector space: the vectors of all levels are concatenated (level ``l`` owns
entries ``offsets[l]:offsets[l + 1]``), and A, P and R become single CSR matrices over that
space, block diagonal for A, with ``P_l`` in block ``(l, l + 1)`` and ``R_l`` in block
``(l + 1, l)``.  A level kernel then runs over its row range only.  The coarsest level is
solved by applying a precomputed dense pseudo-inverse (PyAMG's default coarse solver, 'pinv'):
exact, and linear in the right-hand side.  The matrices are constants; only the weights are
differentiated.

Weights: one pre- and one post-smoothing weight per level (all but the coarsest), because the
two smoothers do different jobs (the pre-smoother damps the error the coarse grid cannot
represent before restriction, the post-smoother the high frequencies the interpolation adds),
so their best weights differ; the extra parameters cost nothing.  With ``smoother="sor"`` the
pre-smoother sweeps forward and the post-smoother backward, so that the cycle is symmetric
for a symmetric matrix (usable as a CG preconditioner).

:meth:`TrainableCycle.apply_to` gives trained weights to PyAMG's own smoothers, so that
``ml.solve`` runs the same cycle.

adsrc reads the kernels' source with ``inspect``: they stay plain module-level functions.
"""

import functools
import math
import numbers

import numpy as np
import scipy.sparse as sp

from adsrc.api import Differentiable, default_backend, value_and_grad
from adsrc.errors import ArgumentError

SMOOTHERS = {"jacobi": 0, "sor": 1}
CYCLES = {"V": 1, "W": 2}       # coarse-grid visits per level (gamma)
MAX_COARSE = 4096               # largest coarsest level whose dense pseudo-inverse we build
FORMATS = ("csr", "bsr")        # PyAMG's formats; BSR converts to CSR exactly

# ---------------------------------------------------------------------------------------------
# The kernels: plain Python over the flattened hierarchy (see the module docstring).
# ---------------------------------------------------------------------------------------------


def _residual(a_ptr, a_ind, a_val, x, b, r, lo, hi):
    """r = b - A x on the rows lo..hi-1 (one level)."""
    for i in range(lo, hi):
        acc = b[i]
        for k in range(a_ptr[i], a_ptr[i + 1]):
            acc -= a_val[k] * x[a_ind[k]]
        r[i] = acc


def _jacobi(a_ptr, a_ind, a_val, dinv, x, b, r, omega, lo, hi):
    """One damped Jacobi sweep on a level: x += omega D^-1 (b - A x)."""
    _residual(a_ptr, a_ind, a_val, x, b, r, lo, hi)
    for i in range(lo, hi):
        x[i] += omega * dinv[i] * r[i]


def _sor(a_ptr, a_ind, a_val, dinv, x, b, omega, first, step, count):
    """One SOR sweep over ``count`` rows from ``first`` by ``step`` (+1 forward, -1 backward):
    x[i] += omega (b[i] - A[i, :] x) / a_ii with the newest x, which is
    x[i] = (1 - omega) x[i] + omega (b[i] - sum_{j != i} a_ij x[j]) / a_ii."""
    for t in range(count):
        i = first + step * t
        acc = b[i]
        for k in range(a_ptr[i], a_ptr[i + 1]):
            acc -= a_val[k] * x[a_ind[k]]
        x[i] += omega * dinv[i] * acc


def _smooth(a_ptr, a_ind, a_val, dinv, x, b, r, omega, smoother, step, sweeps, lo, hi):
    """``sweeps`` sweeps of the smoother on a level (SOR in the direction ``step``)."""
    for s in range(sweeps):
        if smoother == 0:
            _jacobi(a_ptr, a_ind, a_val, dinv, x, b, r, omega, lo, hi)
        elif step == 1:
            _sor(a_ptr, a_ind, a_val, dinv, x, b, omega, lo, 1, hi - lo)
        else:
            _sor(a_ptr, a_ind, a_val, dinv, x, b, omega, hi - 1, -1, hi - lo)


def _restrict(r_ptr, r_ind, r_val, x, b, r, lo, hi):
    """The coarse problem of rows lo..hi-1: b = R r, and a zero initial guess x = 0."""
    for i in range(lo, hi):
        acc = 0.0
        for k in range(r_ptr[i], r_ptr[i + 1]):
            acc += r_val[k] * r[r_ind[k]]
        b[i] = acc
        x[i] = 0.0


def _prolong(p_ptr, p_ind, p_val, x, lo, hi):
    """The coarse-grid correction of rows lo..hi-1: x += P x_coarse."""
    for i in range(lo, hi):
        acc = 0.0
        for k in range(p_ptr[i], p_ptr[i + 1]):
            acc += p_val[k] * x[p_ind[k]]
        x[i] += acc


def _coarse_solve(coarse_inv, x, b, lo, hi):
    """x = A_coarse^+ b on the coarsest level (rows lo..hi-1), by the dense pseudo-inverse."""
    for i in range(lo, hi):
        acc = 0.0
        for j in range(lo, hi):
            acc += coarse_inv[i - lo, j - lo] * b[j]
        x[i] = acc


def _cycle(level, weights, x, b, r, offsets, a_ptr, a_ind, a_val, p_ptr, p_ind, p_val,
           r_ptr, r_ind, r_val, dinv, coarse_inv, gamma, smoother, sweeps):
    """One multigrid cycle on ``level`` for A x = b (gamma = 1: V-cycle, 2: W-cycle)."""
    lo = offsets[level]
    hi = offsets[level + 1]
    if level == len(offsets) - 2:
        _coarse_solve(coarse_inv, x, b, lo, hi)
    else:
        _smooth(a_ptr, a_ind, a_val, dinv, x, b, r, weights[level, 0], smoother, 1, sweeps,
                lo, hi)
        _residual(a_ptr, a_ind, a_val, x, b, r, lo, hi)
        _restrict(r_ptr, r_ind, r_val, x, b, r, hi, offsets[level + 2])
        for visit in range(gamma):
            _cycle(level + 1, weights, x, b, r, offsets, a_ptr, a_ind, a_val, p_ptr, p_ind,
                   p_val, r_ptr, r_ind, r_val, dinv, coarse_inv, gamma, smoother, sweeps)
        _prolong(p_ptr, p_ind, p_val, x, lo, hi)
        _smooth(a_ptr, a_ind, a_val, dinv, x, b, r, weights[level, 1], smoother, -1, sweeps,
                lo, hi)


def cycle_residual_norm(weights, x, b, r, offsets, a_ptr, a_ind, a_val, p_ptr, p_ind, p_val,
                        r_ptr, r_ind, r_val, dinv, coarse_inv, gamma, smoother, sweeps, cycles):
    """``cycles`` multigrid cycles from x, then the finest residual norm ||b - A x||.

    The arguments are those :meth:`TrainableCycle.arguments` builds; x, b and r are the
    concatenated vectors of all levels and are overwritten (the finest x with the final
    iterate)."""
    for c in range(cycles):
        _cycle(0, weights, x, b, r, offsets, a_ptr, a_ind, a_val, p_ptr, p_ind, p_val,
               r_ptr, r_ind, r_val, dinv, coarse_inv, gamma, smoother, sweeps)
    _residual(a_ptr, a_ind, a_val, x, b, r, offsets[0], offsets[1])
    total = 0.0
    for i in range(offsets[0], offsets[1]):
        total += r[i] * r[i]
    return math.sqrt(total)


@functools.lru_cache(maxsize=None)
def _derivatives(backend):
    """``(value_and_grad of the kernel, the kernel as a Differentiable)`` (the latter for its
    compiled primal and tangent), made once per backend and process: adsrc analyses each
    once, and the compiled modules are cached on disk."""
    return (value_and_grad(cycle_residual_norm, wrt="weights", backend=backend),
            Differentiable(cycle_residual_norm, wrt="weights", outputs=("return",),
                           backend=backend))


# ---------------------------------------------------------------------------------------------
# The hierarchy, flattened
# ---------------------------------------------------------------------------------------------


def _csr(matrix, where):
    """``matrix`` as float64 CSR with sorted indices; ArgumentError unless it is a real CSR or
    BSR sparse matrix (the hierarchy's own matrix is never modified)."""
    if not sp.issparse(matrix) or matrix.format not in FORMATS:
        raise ArgumentError(f"adsrc.amg: {where} is a {type(matrix).__name__}; a level's "
                            "matrices must be scipy CSR (or BSR) sparse matrices")
    if not np.isrealobj(matrix.data):
        raise ArgumentError(f"adsrc.amg: {where} has {matrix.dtype} values; only real "
                            "matrices are supported")
    csr = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    csr.sort_indices()
    return csr


def _levels(hierarchy):
    """The hierarchy's (A list, P list, R list) as CSR, after checking shapes."""
    levels = getattr(hierarchy, "levels", None)
    if not isinstance(levels, (list, tuple)) or len(levels) < 2:
        raise ArgumentError("adsrc.amg: expected a PyAMG MultilevelSolver with at least two "
                            "levels (an object with a .levels list)")
    try:
        a = [_csr(level.A, f"level {i} A") for i, level in enumerate(levels)]
        p = [_csr(level.P, f"level {i} P") for i, level in enumerate(levels[:-1])]
        r = [_csr(level.R, f"level {i} R") for i, level in enumerate(levels[:-1])]
    except AttributeError as missing:
        raise ArgumentError(f"adsrc.amg: a level lacks a matrix: {missing}") from None
    sizes = [m.shape[0] for m in a]
    for i, m in enumerate(a):
        if m.shape != (sizes[i], sizes[i]):
            raise ArgumentError(f"adsrc.amg: level {i} A has shape {m.shape}, not square")
    for i in range(len(p)):
        if p[i].shape != (sizes[i], sizes[i + 1]) or r[i].shape != (sizes[i + 1], sizes[i]):
            raise ArgumentError(f"adsrc.amg: level {i} P {p[i].shape} and R {r[i].shape} do "
                                f"not map between {sizes[i]} and {sizes[i + 1]} unknowns")
    if sizes[-1] > MAX_COARSE:
        raise ArgumentError(f"adsrc.amg: the coarsest level has {sizes[-1]} unknowns; its "
                            f"dense inverse is built only up to {MAX_COARSE}: use more levels")
    return a, p, r


def _whole(placed, sizes):
    """One CSR matrix over the concatenated levels, with the blocks ``placed`` = [(matrix,
    (row level, column level))], as the kernels' (indptr, indices, data) with int64 indices."""
    grid = [[None] * len(sizes) for _ in sizes]
    for level, n in enumerate(sizes):
        grid[level][level] = sp.csr_matrix((n, n))      # fixes every block's size
    for matrix, (row, col) in placed:
        grid[row][col] = matrix
    whole = sp.csr_matrix(sp.bmat(grid, format="csr"))
    whole.sort_indices()
    return whole


def _arrays(matrix):
    return (matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64),
            np.ascontiguousarray(matrix.data, dtype=np.float64))


def _real_vector(value, size, name):
    """A float64 copy of ``value``; ArgumentError unless it is a finite real vector of
    ``size``."""
    array = np.asarray(value)
    if array.shape != (size,) or not (np.isrealobj(array) and np.issubdtype(array.dtype,
                                                                            np.number)):
        raise ArgumentError(f"adsrc.amg: {name} must be a real vector of {size} values, got "
                            f"{array.dtype} of shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ArgumentError(f"adsrc.amg: {name} has non-finite values")
    return array.astype(np.float64, copy=True)


class TrainableCycle:
    """Multigrid cycles of a PyAMG hierarchy, with smoother weights to differentiate and train.

    ``smoother`` is "jacobi" (damped Jacobi, ``x += w D^-1 (b - A x)``) or "sor" (forward SOR
    before the coarse-grid correction, backward after); ``cycle`` is "V" or "W"; ``sweeps`` is
    the number of smoothing sweeps before and after the correction.  The hierarchy is copied
    (flattened, see the module docstring) and never modified; later changes to it are not seen.

    Weights are an array of shape :attr:`weight_shape` = ``(levels - 1, 2)``: row ``l`` holds
    the pre- and the post-smoothing weight of level ``l``.  Every method checks its arguments
    before anything runs (``adsrc.ArgumentError``) and never modifies them.
    """

    def __init__(self, hierarchy, smoother="jacobi", cycle="V", sweeps=1, backend=None):
        if smoother not in SMOOTHERS:
            raise ArgumentError(f"adsrc.amg: unknown smoother {smoother!r} (available: "
                                f"{', '.join(SMOOTHERS)})")
        if cycle not in CYCLES:
            raise ArgumentError(f"adsrc.amg: unknown cycle {cycle!r} (available: "
                                f"{', '.join(CYCLES)})")
        _check_count(sweeps, "sweeps", least=1)
        a, p, r = _levels(hierarchy)
        sizes = [m.shape[0] for m in a]
        whole_a = _whole([(m, (l, l)) for l, m in enumerate(a)], sizes)
        diagonal = whole_a.diagonal()
        if np.any(diagonal == 0.0):
            raise ArgumentError("adsrc.amg: a level's A has a zero diagonal entry; the "
                                "smoothers divide by the diagonal")
        self.smoother, self.cycle, self.sweeps = smoother, cycle, sweeps
        self.levels = len(a)
        self.size = sizes[0]
        self.backend = backend or default_backend()
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._constants = (
            self._offsets, *_arrays(whole_a),
            *_arrays(_whole([(m, (l, l + 1)) for l, m in enumerate(p)], sizes)),
            *_arrays(_whole([(m, (l + 1, l)) for l, m in enumerate(r)], sizes)),
            1.0 / diagonal, np.ascontiguousarray(np.linalg.pinv(a[-1].toarray())),
            CYCLES[cycle], SMOOTHERS[smoother], sweeps)

    @property
    def weight_shape(self):
        return (self.levels - 1, 2)

    def initial_weights(self):
        """The classical weights to start training from: 2/3 for Jacobi (the weight that
        damps the upper half of the spectrum best for 1-D Poisson), 1 for SOR
        (Gauss-Seidel)."""
        return np.full(self.weight_shape, 2.0 / 3.0 if self.smoother == "jacobi" else 1.0)

    def arguments(self, weights, b, x0=None, cycles=1):
        """The arguments of :func:`cycle_residual_norm` for this hierarchy: fresh arrays, so
        the kernel (or the caller) may overwrite them.  Use them with any adsrc function, e.g.
        ``adsrc.jacobian(adsrc.amg.cycle_residual_norm, wrt="weights", outputs="return")``."""
        weights, x, b, r, *constants, cycles = self._arguments(weights, b, x0, cycles)
        return (weights, x, b, r, *(constant.copy() if isinstance(constant, np.ndarray)
                                    else constant for constant in constants), cycles)

    def _arguments(self, weights, b, x0=None, cycles=1):
        """:meth:`arguments` with the hierarchy's own arrays (which the cycle only reads) in
        place of copies, for this object's calls."""
        weights = np.asarray(weights)
        if weights.shape != self.weight_shape or not (
                np.isrealobj(weights) and np.issubdtype(weights.dtype, np.number)):
            raise ArgumentError(f"adsrc.amg: weights must be real of shape {self.weight_shape} "
                                f"(pre and post weight per level but the coarsest), got "
                                f"{weights.dtype} of shape {weights.shape}")
        if not np.all(np.isfinite(weights)):
            raise ArgumentError("adsrc.amg: weights has non-finite values")
        _check_count(cycles, "cycles", least=0)
        total = int(self._offsets[-1])
        x = np.zeros(total)
        b_all = np.zeros(total)
        b_all[:self.size] = _real_vector(b, self.size, "b")
        if x0 is not None:
            x[:self.size] = _real_vector(x0, self.size, "x0")
        return (weights.astype(np.float64, order="C", copy=True), x, b_all, np.zeros(total),
                *self._constants, cycles)

    def residual_norm(self, weights, b, x0=None, cycles=1):
        """``||b - A x_k||`` after ``cycles`` cycles from ``x0`` (default zero)."""
        args = self._arguments(weights, b, x0, cycles)
        return float(_derivatives(self.backend)[1].primal(*args))

    def value_and_grad(self, weights, b, x0=None, cycles=1):
        """``(||b - A x_k||, its gradient with respect to the weights)``, the gradient of
        :attr:`weight_shape`, by adsrc's adjoint of the whole cycle.  (At a zero residual the
        norm has no gradient: the result is then nan.)"""
        return _derivatives(self.backend)[0](*self._arguments(weights, b, x0, cycles))

    def convergence_factor(self, weights, cycles=20, seed=0):
        """The asymptotic convergence factor: the residual reduction per cycle on A x = 0 from
        a random start, as the geometric mean over the last half of ``cycles`` (the first half
        lets the slowest error take over).  The iterate is rescaled after every cycle, which
        the cycle's linearity allows, so that rounding never limits the reduction."""
        _check_count(cycles, "cycles", least=2)
        kernel = _derivatives(self.backend)[1]
        zero = np.zeros(self.size)
        x = np.random.default_rng(seed).standard_normal(self.size)
        x /= self.residual_norm(weights, zero, x, cycles=0)
        logs = []
        for _ in range(cycles):
            args = self._arguments(weights, zero, x, cycles=1)
            reduction = kernel.primal(*args)
            logs.append(math.log(reduction))
            x = args[1][:self.size] / reduction     # args[1]: the kernel's x, now x_1
        return math.exp(np.mean(logs[cycles // 2:]))

    def apply_to(self, hierarchy, weights):
        """Give PyAMG's own ``hierarchy.solve`` these cycles' smoothers with ``weights``
        (``pyamg.relaxation.smoothing.change_smoothers``; Jacobi without PyAMG's
        spectral-radius scaling), e.g. to solve with trained weights.  Pass
        ``cycle=self.cycle`` to ``solve``.

        PyAMG 5.4's SOR ignores ``omega`` on BSR matrices (it runs Gauss-Seidel there), and
        smoothed aggregation makes the coarse levels BSR: for SOR with weights other than 1,
        a BSR level is refused; convert it first (``level.A = level.A.tocsr()``)."""
        from pyamg.relaxation.smoothing import change_smoothers

        weights = self._arguments(weights, np.zeros(self.size))[0]
        levels = getattr(hierarchy, "levels", ())
        if len(levels) != self.levels:
            raise ArgumentError(f"adsrc.amg: the hierarchy has {len(levels)} levels, these "
                                f"cycles {self.levels}")
        if self.smoother == "sor" and np.any(weights != 1.0):
            for i, level in enumerate(levels[:-1]):
                if getattr(level.A, "format", None) == "bsr":
                    raise ArgumentError(f"adsrc.amg: level {i} A is BSR, on which PyAMG's SOR "
                                        "ignores omega; convert it: level.A = level.A.tocsr()")
        if self.smoother == "jacobi":
            settings = [{"withrho": False}, {"withrho": False}]
        else:
            settings = [{"sweep": "forward"}, {"sweep": "backward"}]
        change_smoothers(hierarchy, *(
            [(self.smoother, {"omega": float(w), "iterations": self.sweeps, **extra})
             for w in weights[:, side]] for side, extra in enumerate(settings)))


def _check_count(value, name, least):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ArgumentError(f"adsrc.amg: {name} must be an int of at least {least}, got "
                            f"{value!r}")
