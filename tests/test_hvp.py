"""Hessian-vector products by tangent over adjoint (adsrc.hvp, adsrc.hessian_operator).

For smooth scalar kernels with loops, branches, in-place updates, a while loop and floats' % and
// (tests/hvp_kernels.py, and corpus kernels), checked against two other methods:

* fourth-order central finite differences of the gradient (adsrc.grad) in the direction v;
* symmetry: ``<H u, v> == <u, H v>``;

and the operator: it plugs into scipy.sparse.linalg.cg, and ``update(x)`` moves the point without
generating or compiling anything again.
"""

import numpy as np
import pytest
import scipy.sparse.linalg as spla

import adsrc
import hvp_kernels as K
import subset_kernels
from corpus.hand_adjoints import CASES
from corpus.problems import to_dense

pytestmark = pytest.mark.usefixtures("backend")   # every test on both backends

FD_STEP = 1e-4


def _case(name):
    return next(case for case in CASES if case.name == name)


def _copies(args):
    return [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]


def _corpus(name, wrt):
    case = _case(name)
    return case.kernel, wrt, lambda rng: case.make_args(rng, np.int32)


# name -> (kernel, wrt, make(rng) -> args)
PROBLEMS = {
    "norm_cubed": (K.norm_cubed, "x", lambda rng: (rng.uniform(0.5, 1.5, 7),)),
    "smoothed_energy": (K.smoothed_energy, "x",
                        lambda rng: (rng.uniform(-1.0, 1.0, 9), 0.1, 3)),
    "smoothed_energy[w]": (K.smoothed_energy, "w",
                           lambda rng: (rng.uniform(-1.0, 1.0, 9), 0.1, 3)),
    "damped_oscillation": (K.damped_oscillation, "x",
                           lambda rng: (np.array([0.8, -0.6]), 0.3)),
    "calls_in_a_loop": (K.calls_in_a_loop, "x", lambda rng: (rng.uniform(-1.0, 1.0, 6), 0.4)),
    "calls_in_a_loop[a]": (K.calls_in_a_loop, "a", lambda rng: (rng.uniform(-1.0, 1.0, 6), 0.4)),
    # x[j] - x[i] + 1.5 0.07 or more from the jumps of % 3.0, x 0.08 or more from those of
    # // 0.7
    "periodic_pairs": (K.periodic_pairs, "x",
                       lambda rng: (np.array([0.13, 0.95, 1.55, 2.31, 2.88]), 3.0)),
    "residual_loss": _corpus("residual_loss", "x"),
    "residual_loss[data]": _corpus("residual_loss", "data"),
    "newton_cubic": _corpus("newton_cubic", "a"),
    "branchy": _corpus("branchy", "x"),
    # calls of a function returning an int: H v's sweeps seed and carry its adjoint as a float
    "int_returning_calls": (subset_kernels.weighted_by_row_lengths, "x",
                            lambda rng: (np.array([0, 1, 3, 6]), rng.uniform(0.5, 1.5, 3))),
    "value_dropped": (K.value_dropped, "u", lambda rng: (rng.uniform(0.5, 1.5, 5), 0.7)),
    "rotated_energy": (K.rotated_energy, "x", lambda rng: (rng.uniform(0.5, 1.5, 4),)),
}


def _vector(value, rng):
    return rng.standard_normal(value.shape) if isinstance(value, np.ndarray) \
        else float(rng.standard_normal())


def _setup(name, seed):
    kernel, wrt, make = PROBLEMS[name]
    rng = np.random.default_rng(seed)
    args = make(rng)
    position = list(kernel.__code__.co_varnames).index(wrt)
    return kernel, wrt, args, position, rng


def _hvp(kernel, wrt, args, position, v):
    return adsrc.hvp(kernel, wrt=wrt)(*args, **{wrt + "_dot": v})


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_hvp_equals_finite_differences_of_the_gradient(name):
    kernel, wrt, args, position, rng = _setup(name, 41)
    v = _vector(args[position], rng)
    before = _copies(args)
    hv = _hvp(kernel, wrt, args, position, v)
    for got, want in zip(args, before):
        np.testing.assert_array_equal(got, want)        # the arguments are left alone
    grad = adsrc.grad(kernel, wrt=wrt)

    def gradient_at(h):
        moved = _copies(args)
        moved[position] = moved[position] + h * v
        return np.asarray(grad(*moved))

    fd = (-gradient_at(2 * FD_STEP) + 8 * gradient_at(FD_STEP) - 8 * gradient_at(-FD_STEP)
          + gradient_at(-2 * FD_STEP)) / (12 * FD_STEP)
    scale = max(float(np.max(np.abs(fd))), 1e-3)
    np.testing.assert_allclose(hv, fd, rtol=1e-6, atol=1e-7 * scale)
    assert float(np.max(np.abs(hv))) > 1e-6


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_hessian_is_symmetric(name):
    kernel, wrt, args, position, rng = _setup(name, 42)
    u, v = _vector(args[position], rng), _vector(args[position], rng)
    hu = _hvp(kernel, wrt, args, position, u)
    hv = _hvp(kernel, wrt, args, position, v)
    assert float(np.sum(hu * v)) == pytest.approx(float(np.sum(u * hv)), rel=1e-10)


def test_operator_with_cg_and_update():
    """Newton step of a convex regularised least-squares loss by CG on the operator; update()
    moves the point and compiles nothing new."""
    case = _case("residual_loss")
    args = list(case.make_args(np.random.default_rng(43), np.int32))
    position = case.arg_index("x")
    x0 = args[position]
    hessian = adsrc.hessian_operator(case.kernel, *args, wrt="x")
    n = x0.size
    dense = np.column_stack([hessian.matvec(e) for e in np.eye(n)])
    np.testing.assert_allclose(dense, dense.T, rtol=1e-10, atol=1e-12)
    gradient = hessian.gradient
    np.testing.assert_allclose(gradient, adsrc.grad(case.kernel, wrt="x")(*_copies(args)),
                               rtol=1e-12)
    step, info = spla.cg(hessian, -gradient, rtol=1e-12, maxiter=10 * n)
    assert info == 0
    np.testing.assert_allclose(step, np.linalg.solve(dense, -gradient), rtol=1e-8, atol=1e-10)
    compiled = dict(hessian._second.kernel._compiled)
    x1 = x0 + 0.3 * step
    hessian.update(x1)
    moved = _copies(args)
    moved[position] = x1
    v = np.random.default_rng(44).standard_normal(n)
    with_v = list(moved)
    with_v.insert(position + 1, v)
    np.testing.assert_allclose(hessian.matvec(v), adsrc.hvp(case.kernel, wrt="x")(*with_v),
                               rtol=1e-12, atol=1e-14)
    assert hessian._second.kernel._compiled == compiled        # nothing new was built
    matmat = hessian.matmat(np.eye(n)[:, :3])
    np.testing.assert_allclose(matmat[:, 1], hessian.matvec(np.eye(n)[:, 1]), rtol=1e-13)


def test_the_direction_by_keyword_or_right_after_the_point():
    """residual_loss(indptr, indices, data, x, b, lam) has b of x's shape: the direction as
    x_dot=, a stack of them, and v right after x all give the Hessian by hand,
    A^T A + 2 lam I, times v."""
    case = _case("residual_loss")
    args = list(case.make_args(np.random.default_rng(45), np.int32))
    indptr, indices, data, x, b, lam = args
    hessian = to_dense(indptr, indices, data).T @ to_dense(indptr, indices, data) \
        + 2.0 * lam * np.eye(x.size)
    rng = np.random.default_rng(46)
    v, w = rng.standard_normal(x.size), rng.standard_normal(x.size)
    hvp = adsrc.hvp(case.kernel, wrt="x")
    by_keyword = hvp(*args, x_dot=v)
    np.testing.assert_allclose(by_keyword, hessian @ v, rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(hvp(indptr, indices, data, x, v, b, lam), by_keyword)
    stacked = hvp(*args, x_dot=np.stack([v, w]))
    np.testing.assert_allclose(stacked, np.stack([hessian @ v, hessian @ w]), rtol=1e-12,
                               atol=1e-13)


def test_bad_requests_are_refused():
    with pytest.raises(adsrc.AdsrcError, match="one wrt"):
        adsrc.hvp(K.smoothed_energy, wrt=("x", "w"))
    x = np.ones(5)
    hvp = adsrc.hvp(K.norm_cubed, wrt="x")
    with pytest.raises(adsrc.ArgumentError, match="direction has shape"):
        hvp(x, np.ones(4))
    with pytest.raises(adsrc.ArgumentError, match="direction has shape"):
        hvp(x, x_dot=np.ones(4))
    with pytest.raises(adsrc.ArgumentError, match=r"as x_dot=, not v="):
        hvp(x, v=np.ones(5))
    with pytest.raises(adsrc.ArgumentError, match="with x_dot=, hvp takes the kernel's 1 "
                                                  "argument, got 2"):
        hvp(x, np.ones(5), x_dot=np.ones(5))
    with pytest.raises(adsrc.ArgumentError, match="1 argument and the direction as x_dot="):
        hvp(x)
    for complex_direction in (1j * np.ones(5), 1j * np.ones((2, 5))):
        with pytest.raises(adsrc.ArgumentError, match="the directions? must be real"):
            hvp(x, x_dot=complex_direction)
    for not_numbers in ("abcd", {}, ["a"] * 5):     # NumPy's ValueError or TypeError
        with pytest.raises(adsrc.ArgumentError, match="the direction must be floats"):
            hvp(x, x_dot=not_numbers)


def cubes_into(x, r):
    r[:] = x * x
    return np.sum(r * x)


def cubes_into_through_a_checkpointed_loop(x, r, n):
    for it in adsrc.checkpointed(range(n), snapshots=2):
        r[:] = x * x
    return np.sum(r * x)


@pytest.mark.parametrize("kernel,rest", [(cubes_into, ()),
                                         (cubes_into_through_a_checkpointed_loop, (3,))])
def test_arrays_the_kernel_sees_as_one_are_refused(kernel, rest):
    """hvp, the Hessian operator and check_grads run the kernel on copies, which would part x
    and r: the call computes sum x^4, the copies sum x^3.  Refused, as grad refuses them."""
    x = np.array([1.0, 2.0, 3.0])
    for call in (lambda: adsrc.hvp(kernel, wrt="x")(x, x, *rest, x_dot=np.ones(3)),
                 lambda: adsrc.hessian_operator(kernel, x, x, *rest).matvec(np.ones(3)),
                 lambda: adsrc.check_grads(kernel, (x, x, *rest), wrt="x")):
        with pytest.raises(adsrc.ArgumentError, match="'x' and 'r' share memory"):
            call()
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])
    v = np.array([1.0, 0.5, -1.0])
    hv = adsrc.hvp(kernel, wrt="x")(x, np.zeros(3), *rest, x_dot=v)
    np.testing.assert_allclose(hv, 6.0 * x * v, rtol=1e-14)     # the Hessian of sum x^3


def test_the_operator_on_complex_vectors_takes_their_parts_apart():
    """H is real, so H (a + ib) = H a + i H b: against the Hessian by hand."""
    rng = np.random.default_rng(62)
    u, c = rng.standard_normal((3, 4)), 0.3
    hessian = adsrc.hessian_operator(K.grid_energy, u, c, wrt="u")
    dense = _grid_energy_hessian(u, c)
    a, b = rng.standard_normal(12), rng.standard_normal(12)
    np.testing.assert_allclose(hessian.matvec(a + 1j * b), dense @ a + 1j * (dense @ b),
                               rtol=1e-12, atol=1e-12)
    columns = rng.standard_normal((12, 2)) + 1j * rng.standard_normal((12, 2))
    np.testing.assert_allclose(hessian.matmat(columns), dense @ columns, rtol=1e-12,
                               atol=1e-12)


def _grid_energy_hessian(u, c):
    """The Hessian of hvp_kernels.grid_energy, by hand, over u's values in C order."""
    m1, m2 = u.shape
    index = np.arange(u.size).reshape(u.shape)
    hessian = np.zeros((u.size, u.size))
    for i in range(m1 - 1):
        for j in range(m2 - 1):
            for neighbour in (index[i + 1, j], index[i, j + 1]):
                d = np.zeros(u.size)        # the difference u[neighbour] - u[i, j] is d . u
                d[neighbour], d[index[i, j]] = 1.0, -1.0
                hessian += 2.0 * np.outer(d, d)
            hessian[index[i, j], index[i, j]] += 12.0 * c * u[i, j] ** 2
    return hessian


def test_operator_of_a_2d_point():
    """A 2-D point: the operator acts on its values flat, in C order; against the Hessian by
    hand, finite differences of the gradient, and hvp in the point's shape."""
    rng = np.random.default_rng(61)
    u, c = rng.standard_normal((4, 5)), 0.3
    hessian = adsrc.hessian_operator(K.grid_energy, u, c, wrt="u")
    assert hessian.shape == (20, 20)
    dense = np.column_stack([hessian.matvec(e) for e in np.eye(20)])
    np.testing.assert_allclose(dense, _grid_energy_hessian(u, c), rtol=1e-12, atol=1e-12)
    gradient = adsrc.grad(K.grid_energy, wrt="u")(u.copy(), c)
    np.testing.assert_allclose(hessian.gradient, gradient.ravel(), rtol=1e-12)
    v = rng.standard_normal((4, 5))
    hv = hessian.matvec(v.ravel())
    np.testing.assert_allclose(hv, adsrc.hvp(K.grid_energy, wrt="u")(u.copy(), v, c).ravel(),
                               rtol=1e-13)
    fd = (-adsrc.grad(K.grid_energy, wrt="u")(u + 2 * FD_STEP * v, c)
          + 8 * adsrc.grad(K.grid_energy, wrt="u")(u + FD_STEP * v, c)
          - 8 * adsrc.grad(K.grid_energy, wrt="u")(u - FD_STEP * v, c)
          + adsrc.grad(K.grid_energy, wrt="u")(u - 2 * FD_STEP * v, c)) / (12 * FD_STEP)
    np.testing.assert_allclose(hv, fd.ravel(), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(hessian.matmat(np.eye(20)[:, 3:7]), dense[:, 3:7], rtol=1e-13)
    moved = u + 0.1
    hessian.update(moved.ravel())       # flat, or in the point's shape
    np.testing.assert_allclose(hessian.matvec(v.ravel()), _grid_energy_hessian(moved, c)
                               @ v.ravel(), rtol=1e-12)
    hessian.update(u)
    np.testing.assert_allclose(hessian.matvec(v.ravel()), hv, rtol=1e-13)
    with pytest.raises(adsrc.ArgumentError, match="expected"):
        hessian.update(np.ones((5, 4)))
    # NumPy's ValueError; a complex point lost its imaginary part with a warning only
    with pytest.raises(adsrc.ArgumentError, match="the point must be floats"):
        hessian.update("abcd")
    with pytest.raises(adsrc.ArgumentError, match="the point must be real"):
        hessian.update((1.0 + 2.0j) * u)
    np.testing.assert_allclose(hessian.matvec(v.ravel()), hv, rtol=1e-13)   # still at u
    with pytest.raises(adsrc.ArgumentError, match="needs an array"):
        adsrc.hessian_operator(K.norm_cubed, 1.5)
    # none (an IndexError), or a count that failed only at the first product
    for wrong in ((), (u,), (u, c, c)):
        with pytest.raises(adsrc.ArgumentError, match=rf"grid_energy: hessian_operator takes "
                           rf"the kernel's 2 arguments \(u, c\) after it, {len(wrong)} given"):
            adsrc.hessian_operator(K.grid_energy, *wrong, wrt="u")


def cubes_and_rows(u, c):
    return np.sum(u * u * u) * c + np.sum(u[0, :] * u[1, :])


def test_a_fortran_ordered_point_and_direction():
    """hvp and the operator work on C-ordered copies: compiled code takes C order, and the
    caller's order is no concern of a call that leaves its arguments as they were."""
    u = np.asfortranarray(np.arange(1.0, 7.0).reshape(2, 3))
    v = np.asfortranarray(np.linspace(-1.0, 1.0, 6).reshape(2, 3))
    want = 6.0 * 0.5 * u * v + v[::-1]           # diag(6 c u) v, and the rows' cross term
    np.testing.assert_allclose(adsrc.hvp(cubes_and_rows, wrt="u")(u, 0.5, u_dot=v), want,
                               rtol=1e-14)
    operator = adsrc.hessian_operator(cubes_and_rows, u, 0.5)
    np.testing.assert_allclose(operator.matvec(v.ravel()), want.ravel(), rtol=1e-14)


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_a_dropped_value_of_a_called_kernel_in_forward_modes(backend):
    """jvp, forward jacobian and hvp of a kernel calling one whose float value it drops: the
    compiled tangent did not build ('Call with wrong number of arguments').  The dot-product
    test against the gradient, which finite differences check."""
    rng = np.random.default_rng(7)
    u, v = rng.uniform(0.5, 1.5, 5), rng.standard_normal(5)
    adsrc.check_grads(K.value_dropped, [u, 0.7], "u", backend=backend)
    gradient = adsrc.grad(K.value_dropped, wrt="u", backend=backend)(u.copy(), 0.7)
    (tangent,) = adsrc.jvp(K.value_dropped, wrt="u", backend=backend)(u.copy(), 0.7, u_dot=v)
    assert tangent == pytest.approx(gradient @ v, rel=1e-13)
    jac = adsrc.jacobian(K.value_dropped, wrt="u", backend=backend, mode="forward")(u.copy(), 0.7)
    np.testing.assert_allclose(jac[0], gradient, rtol=1e-13)
    hv = adsrc.hvp(K.value_dropped, wrt="u", backend=backend)(u.copy(), 0.7, u_dot=v)
    step = 1e-5
    fd = (adsrc.grad(K.value_dropped, wrt="u", backend=backend)(u + step * v, 0.7)
          - adsrc.grad(K.value_dropped, wrt="u", backend=backend)(u - step * v, 0.7)) / (2 * step)
    np.testing.assert_allclose(hv, fd, rtol=1e-6)
