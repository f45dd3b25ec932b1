"""``adsrc.jacobian``: dense Jacobians by tangent columns or adjoint rows, on both backends.

For kernels with array outputs, a return value, both, and scalar inputs, the forward-mode and
reverse-mode Jacobians agree to rounding (two independent transformations), and each column
equals fourth-order central finite differences of the primal.  The arguments are left as they
were.
"""

import numpy as np
import pytest
import scipy.sparse as sp

import adsrc
import checkpointed_loop_kernels as C
from corpus.hand_adjoints import CASES

pytestmark = pytest.mark.usefixtures("backend")   # every test on both backends

CHOSEN = ("sor", "smooth1d", "newton_cubic", "branchy", "mg_residual")
FD_STEP = 1e-3


def _case(name):
    return next(case for case in CASES if case.name == name)


def _copies(args):
    return [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]


def _outputs(case, args):
    """The outputs of a primal run, raveled and concatenated in ``outputs`` order."""
    moved = _copies(args)
    returned = case.kernel(*moved)
    parts = [np.array([returned]) if out == "return" else np.ravel(moved[case.arg_index(out)])
             for out in case.outputs]
    return np.concatenate(parts)


def _finite_difference_jacobian(case, args):
    columns = []
    for name in case.wrt:
        value = args[case.arg_index(name)]
        for index in range(np.size(value)):
            def at(h):
                moved = _copies(args)
                if isinstance(value, np.ndarray):
                    moved[case.arg_index(name)].flat[index] += h
                else:
                    moved[case.arg_index(name)] = value + h
                return _outputs(case, moved)
            columns.append((-at(2 * FD_STEP) + 8 * at(FD_STEP) - 8 * at(-FD_STEP)
                            + at(-2 * FD_STEP)) / (12 * FD_STEP))
    return np.stack(columns, axis=1)


@pytest.mark.parametrize("name", CHOSEN)
def test_forward_and_reverse_jacobians_agree_with_finite_differences(name):
    case = _case(name)
    args = case.make_args(np.random.default_rng(31), np.int32)
    before = _copies(args)
    forward = adsrc.jacobian(case.kernel, wrt=case.wrt, outputs=case.outputs,
                             mode="forward")(*args)
    reverse = adsrc.jacobian(case.kernel, wrt=case.wrt, outputs=case.outputs,
                             mode="reverse")(*args)
    n_out = sum(1 if out == "return" else np.size(args[case.arg_index(out)])
                for out in case.outputs)
    n_in = sum(np.size(args[case.arg_index(name)]) for name in case.wrt)
    assert forward.shape == reverse.shape == (n_out, n_in)
    scale = np.max(np.abs(forward))
    assert scale > 0
    np.testing.assert_allclose(reverse, forward, rtol=1e-11, atol=1e-12 * scale)
    np.testing.assert_allclose(forward, _finite_difference_jacobian(case, args), rtol=1e-5,
                               atol=1e-7 * scale)
    auto = adsrc.jacobian(case.kernel, wrt=case.wrt, outputs=case.outputs)(*args)
    np.testing.assert_allclose(auto, forward, rtol=1e-11, atol=1e-12 * scale)
    for got, want in zip(args, before):                     # nothing was modified
        np.testing.assert_array_equal(got, want)


def test_unknown_mode_is_refused():
    case = _case("sor")
    with pytest.raises(adsrc.AdsrcError, match="mode"):
        adsrc.jacobian(case.kernel, wrt=case.wrt, outputs=case.outputs, mode="sideways")


def test_jvp_is_the_jacobian_times_v():
    case = _case("sor")
    rng = np.random.default_rng(32)
    args = case.make_args(rng, np.int32)
    jac = adsrc.jacobian(case.kernel, wrt=case.wrt, outputs=case.outputs)(*args)
    v = {name: (rng.standard_normal(np.shape(args[case.arg_index(name)]))
                if isinstance(args[case.arg_index(name)], np.ndarray) else 0.3)
         for name in case.wrt}
    flat_v = np.concatenate([np.ravel(v[name]) for name in case.wrt])
    (x_tangent,) = adsrc.jvp(case.kernel, wrt=case.wrt, outputs=case.outputs)(
        *_copies(args), **{name + "_dot": np.copy(d) for name, d in v.items()})
    np.testing.assert_allclose(x_tangent, jac @ flat_v, rtol=1e-11, atol=1e-12)


def scaled_into(a, x, y):
    for i in range(len(y)):
        y[i] = y[i] + a * x[i]


def test_arrays_the_kernel_sees_as_one_are_refused():
    """Its runs work on copies, which would part them: as f.tangent and f.adjoint do, the
    call is refused (before, the Jacobian of y + a x with x apart from y came back)."""
    y = np.ones(3)
    with pytest.raises(adsrc.ArgumentError, match="'x' and 'y' share memory"):
        adsrc.jacobian(scaled_into, wrt="x", outputs="y")(2.0, y, y)
    np.testing.assert_array_equal(y, np.ones(3))
    jac = adsrc.jacobian(scaled_into, wrt=("a", "x"), outputs="y")(2.0, np.arange(3.0), y)
    np.testing.assert_allclose(jac, np.column_stack([np.arange(3.0), 2.0 * np.eye(3)]),
                               rtol=1e-14)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_a_kernel_with_a_checkpointed_loop(mode):
    """Its Jacobian (reverse mode: adjoints under the checkpoint schedule; forward mode:
    tangents over the range) is the kernel's without the marker, whose Jacobian is checked
    against finite differences above, and finite differences of its own."""
    A = sp.diags([-1.0, 2.5, -1.0], [-1, 0, 1], shape=(6, 6), format="csr")
    x, b = np.linspace(0.1, 0.6, 6), np.linspace(1.0, 2.0, 6)
    args = (A.indptr, A.indices, A.data, x, b, 5)
    marked = adsrc.jacobian(C.gauss_seidel_binomial, wrt=("data", "b"), outputs="x",
                            mode=mode)(*args)
    plain = adsrc.jacobian(C.gauss_seidel_plain, wrt=("data", "b"), outputs="x",
                           mode=mode)(*args)
    np.testing.assert_allclose(marked, plain, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(x, np.linspace(0.1, 0.6, 6))    # left as it was
    for column, e in enumerate(np.eye(6)):         # the columns of b
        moved = [x.copy(), x.copy()]
        C.gauss_seidel_plain(A.indptr, A.indices, A.data, moved[0], b + 1e-6 * e, 5)
        C.gauss_seidel_plain(A.indptr, A.indices, A.data, moved[1], b - 1e-6 * e, 5)
        np.testing.assert_allclose(marked[:, A.nnz + column], (moved[0] - moved[1]) / 2e-6,
                                   rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_no_input_values_give_an_empty_jacobian(mode):
    """An empty wrt array: a Jacobian with no columns, as NumPy shapes it (a vector-mode
    sweep with no direction was refused before)."""
    A = sp.diags([-1.0, 2.5, -1.0], [-1, 0, 1], shape=(3, 3), format="csr")
    jac = adsrc.jacobian(C.gauss_seidel_plain, wrt="b", outputs="x", mode=mode)(
        np.zeros(1, np.int32), np.zeros(0, np.int32), np.zeros(0), np.zeros(0), np.zeros(0), 1)
    assert jac.shape == (0, 0)
    jac = adsrc.jacobian(C.gauss_seidel_plain, wrt="b", outputs="x", mode=mode)(
        A.indptr, A.indices, A.data, np.zeros(3), np.ones(3), 1)
    assert jac.shape == (3, 3) and np.all(np.diag(jac) == 1.0 / 2.5)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_fortran_ordered_arrays_are_taken_as_their_values(mode):
    """The runs work on copies in C order, the order compiled code takes (the compiled
    backend refused a Fortran-ordered 2-D argument: 'not C-contiguous'); the Jacobian is the
    one of the same values in C order, and finite differences', and the arrays are left as
    they were."""
    case = _case("jacobi2d")
    args = case.make_args(np.random.default_rng(33), np.int32)
    fortran = [np.asfortranarray(a) if isinstance(a, np.ndarray) and a.ndim == 2 else a
               for a in args]
    assert not fortran[0].flags.c_contiguous and not fortran[1].flags.c_contiguous
    before = _copies(fortran)
    got = adsrc.jacobian(case.kernel, wrt=case.wrt, outputs=case.outputs, mode=mode)(*fortran)
    want = adsrc.jacobian(case.kernel, wrt=case.wrt, outputs=case.outputs, mode=mode)(*args)
    np.testing.assert_array_equal(got, want)
    scale = np.max(np.abs(want))
    np.testing.assert_allclose(got, _finite_difference_jacobian(case, args), rtol=1e-5,
                               atol=1e-7 * scale)
    for now, then in zip(fortran, before):
        np.testing.assert_array_equal(now, then)
        assert not isinstance(now, np.ndarray) or now.flags.f_contiguous == then.flags.f_contiguous
