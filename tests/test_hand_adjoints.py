"""The oracle's own check: every hand-written adjoint in tests/corpus against
central finite differences of the kernel (Richardson-extrapolated).

For random directions v (inputs) and w (output seeds):

    <w, (F(x + h v) - F(x - h v)) / 2h>  ==  <v, hand_adjoint(w)>

This file does not import adsrc: it validates the oracles independently of
the tool they are meant to check.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve_triangular

from corpus import kernels as K
from corpus.hand_adjoints import CASES
from corpus.problems import (
    INT_DTYPES,
    lower_csr,
    perturb_data,
    poisson2d_csr,
    poisson2d_scipy,
    upper_csr,
)

RTOL = 1e-7
H = 1e-3


def _params():
    out = []
    for case in CASES:
        for dt in INT_DTYPES if case.uses_indices else (np.int64,):
            out.append(pytest.param(case, dt, id=f"{case.name}-{np.dtype(dt).name}"))
    return out


PARAMS = _params()


def _copy_args(args):
    return tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args)


def _run(case, args, direction, h):
    """Outputs of the kernel at args + h * direction (args are not touched)."""
    a = list(_copy_args(args))
    for name, d in direction.items():
        i = case.arg_index(name)
        if isinstance(a[i], np.ndarray):
            a[i] = a[i] + h * d
        else:
            a[i] = float(a[i] + h * d)
    ret = case.kernel(*a)
    return {o: (float(ret) if o == "return" else a[case.arg_index(o)]) for o in case.outputs}


def _seed_of(name):
    return "out_bar" if name == "return" else name + "_bar"


def fd_directional(case, args, v, bars, h=H):
    """<w, J v> by central differences with one Richardson step (error O(h^4))."""

    def central(step):
        fp = _run(case, args, v, step)
        fm = _run(case, args, v, -step)
        tot = 0.0
        for o in case.outputs:
            tot += float(np.sum(np.asarray(bars[_seed_of(o)]) * (np.asarray(fp[o]) - np.asarray(fm[o]))))
        return tot / (2.0 * step)

    return (4.0 * central(h / 2.0) - central(h)) / 3.0


def _dot(v, g):
    return float(sum(np.sum(np.asarray(v[n]) * np.asarray(g[n])) for n in v))


def _random_direction(rng, args, case, names):
    v = {}
    for n in names:
        a = args[case.arg_index(n)]
        v[n] = rng.standard_normal(np.shape(a)) if isinstance(a, np.ndarray) else float(rng.standard_normal())
    return v


@pytest.mark.parametrize("case,int_dtype", PARAMS)
def test_hand_adjoint_against_finite_differences(case, int_dtype):
    rng = np.random.default_rng(1234)
    args = case.make_args(rng, int_dtype)
    before = _copy_args(args)
    for trial in range(3):
        bars = case.make_bars(rng, args)
        bars_before = {k: np.copy(b) for k, b in bars.items()}
        grads = case.hand_all(args, bars)
        # the oracle leaves its inputs alone
        for a0, a1 in zip(before, args):
            np.testing.assert_array_equal(a0, a1)
        for k in bars:
            np.testing.assert_array_equal(bars[k], bars_before[k])
        # every wrt name is covered, shapes and types are right
        assert set(case.wrt) <= set(grads)
        for n, g in grads.items():
            a = args[case.arg_index(n)]
            if isinstance(a, np.ndarray):
                assert isinstance(g, np.ndarray) and g.shape == a.shape and g.dtype == np.float64, n
            else:
                assert isinstance(g, float), n
        # joint random direction over all float arguments
        v = _random_direction(rng, args, case, list(grads))
        lhs = fd_directional(case, args, v, bars)
        rhs = _dot(v, grads)
        assert abs(lhs - rhs) <= RTOL * max(abs(lhs), abs(rhs)), (case.name, trial, lhs, rhs)
        assert abs(rhs) > 1e-6, "degenerate test: the directional derivative vanishes"
        scale = abs(lhs)
        # one argument at a time, so that a small adjoint cannot hide in a sum
        for n in grads:
            v1 = _random_direction(rng, args, case, [n])
            l1 = fd_directional(case, args, v1, bars)
            r1 = _dot(v1, {n: grads[n]})
            assert abs(l1 - r1) <= RTOL * max(abs(l1), abs(r1)) + 1e-10 * scale, (case.name, n, l1, r1)


@pytest.mark.parametrize("case,int_dtype", PARAMS)
def test_wrt_arguments_really_matter(case, int_dtype):
    """Every case's wrt entry has a non-zero adjoint for random seeds, except
    arrays that the kernel overwrites before reading (listed on purpose, to
    check that adsrc zeroes their bars)."""
    overwritten = {("spmv", "y"), ("spmv_transpose", "y"), ("branchy", "y"), ("branchy[a>1]", "y")}
    rng = np.random.default_rng(99)
    args = case.make_args(rng, int_dtype)
    grads = case.hand(args, case.make_bars(rng, args))
    for n, g in zip(case.wrt, grads):
        if (case.name, n) in overwritten:
            assert np.all(np.asarray(g) == 0.0)
        else:
            assert np.max(np.abs(g)) > 1e-3, (case.name, n)


# ---------------------------------------------------------------------------
# the kernels compute what their docstrings say
# ---------------------------------------------------------------------------


def _csr(indptr, indices, data):
    n = len(indptr) - 1
    return sp.csr_matrix((data, indices, indptr), shape=(n, n))


@pytest.mark.parametrize("int_dtype", INT_DTYPES)
def test_problems_are_poisson(int_dtype):
    indptr, indices, data = poisson2d_csr(5, int_dtype)
    assert indptr.dtype == int_dtype and indices.dtype == int_dtype and data.dtype == np.float64
    a = _csr(indptr, indices, data)
    np.testing.assert_array_equal(a.toarray(), poisson2d_scipy(5).toarray())
    assert len(data) == 5 * 25 - 4 * 5  # 5-point stencil, explicit zeros removed
    for i in range(25):
        row = indices[indptr[i]:indptr[i + 1]]
        assert np.all(np.diff(row) > 0) and i in row
    lo, up = _csr(*lower_csr(5, int_dtype)), _csr(*upper_csr(5, int_dtype))
    np.testing.assert_array_equal((lo + up).toarray() - np.diag(np.full(25, 4.0)), a.toarray())
    assert sp.triu(lo, 1).nnz == 0 and sp.tril(up, -1).nnz == 0


def test_csr_kernels_primal():
    rng = np.random.default_rng(5)
    indptr, indices, data = poisson2d_csr(4)
    data = perturb_data(rng, indptr, indices, data)
    a = _csr(indptr, indices, data)
    x, b = rng.uniform(-1, 1, 16), rng.uniform(-1, 1, 16)
    y = np.full(16, np.nan)
    K.spmv(indptr, indices, data, x, y)
    np.testing.assert_allclose(y, a @ x, rtol=1e-14)
    K.spmv_transpose(indptr, indices, data, x, y)
    np.testing.assert_allclose(y, a.T @ x, rtol=1e-14)
    for kern, part, lower in ((K.lower_solve, sp.tril, True), (K.upper_solve, sp.triu, False)):
        z = x.copy()
        kern(indptr, indices, data, z)
        np.testing.assert_allclose(z, spsolve_triangular(part(a).tocsr(), x, lower=lower), rtol=1e-12)
    exact = np.linalg.solve(a.toarray(), b)
    for kern in (K.gauss_seidel, K.gauss_seidel_backward, K.gauss_seidel_symmetric):
        z = np.zeros(16)
        kern(indptr, indices, data, z, b, 60)
        np.testing.assert_allclose(z, exact, rtol=1e-9, atol=1e-12)
    z = np.zeros(16)
    K.sor(indptr, indices, data, z, b, 1.2, 60)
    np.testing.assert_allclose(z, exact, rtol=1e-9, atol=1e-12)
    z = np.zeros(16)
    K.jacobi_csr(indptr, indices, data, z, b, 0.8, 300)
    np.testing.assert_allclose(z, exact, rtol=1e-8, atol=1e-12)
    z = np.zeros(16)
    K.jacobi_damped(indptr, indices, data, 1.0 / a.diagonal(), z, b, 0.8, 300)
    np.testing.assert_allclose(z, exact, rtol=1e-8, atol=1e-12)
    loss = K.residual_loss(indptr, indices, data, x, b, 0.3)
    assert loss == pytest.approx(0.5 * np.sum((a @ x - b) ** 2) + 0.3 * np.sum(x * x), rel=1e-14)


def test_dense_and_scalar_kernels_primal():
    rng = np.random.default_rng(6)
    u, f = rng.uniform(-1, 1, (5, 6)), rng.uniform(-1, 1, (5, 6))
    u1, u2 = u.copy(), u.copy()
    K.jacobi2d(u1, f, 0.7, 3)
    K.jacobi2d_slices(u2, f, 0.7, 3)
    np.testing.assert_allclose(u1, u2, rtol=1e-14)
    assert not np.allclose(u1, u)
    np.testing.assert_array_equal(u1[0], u[0])
    np.testing.assert_array_equal(u1[:, -1], u[:, -1])

    v = rng.uniform(-1, 1, 9)
    v1 = v.copy()
    K.smooth1d(v1, 1.0, 1)
    np.testing.assert_allclose(v1[1:-1], 0.5 * (v[:-2] + v[2:]), rtol=1e-15)

    for a, c in ((0.5, 2.0), (1.7, -3.0), (1.0, 0.0)):
        x = K.newton_cubic(a, c, 1.0, 1e-13, 50)
        assert abs(x**3 + a * x - c) < 1e-12

    x = np.array([2.0, 0.1, -0.8, -1.5])
    y = np.zeros(4)
    s = K.branchy(x, y, 0.7)
    expect = [
        np.sqrt(2.0) * np.exp(-1.4) + np.log(3.0),
        np.sin(0.07) * np.cos(0.1) + np.tanh(0.1),
        0.8**1.5 + (-0.8) * 0.7,
        1.5**1.5 + (-1.5) * 2.25,
    ]
    np.testing.assert_allclose(y, expect, rtol=1e-14)
    assert s == pytest.approx(np.sum(np.square(expect)), rel=1e-14)


def test_vcycle_primal_is_a_multigrid_cycle():
    rng = np.random.default_rng(7)
    n = 8
    a = 2.5 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    b = rng.uniform(-1, 1, n)
    x = np.zeros(n)
    r = np.zeros(n)
    K.mg_residual(x, b, r)
    np.testing.assert_allclose(r, b, rtol=1e-15)
    norms = []
    for _ in range(8):
        K.vcycle(0, 4, x, b, 0.8)
        norms.append(np.linalg.norm(b - a @ x))
    assert norms[-1] < 1e-3 * np.linalg.norm(b)  # converges
    assert all(n1 < n0 for n0, n1 in zip(norms, norms[1:]))
    xc = np.zeros(1)
    K.vcycle(3, 4, xc, np.array([1.0]), 0.8)  # the coarsest level solves directly
    assert xc[0] == pytest.approx(1.0 / 2.5, rel=1e-15)
