"""SciPy sparse matrices passed to a kernel (adsrc/matrix_arguments.py): gradients with respect to
a matrix's stored values against finite differences, against the same kernel taking the arrays,
and against the tangent (dot-product test); the closed form of a compliance gradient; errors."""

import inspect

import numpy as np
import pytest
import scipy.sparse as sp

import adsrc
from tests import matrix_argument_kernels as mk

pytestmark = pytest.mark.usefixtures("backend")

MAKERS = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "coo": sp.coo_matrix,
          "csr_array": sp.csr_array}


def _matrix(kind):
    return MAKERS[kind](sp.random(5, 4, density=0.6, random_state=3, format="csr"))


def _products_args(A):
    return [A, np.linspace(-1.0, 1.0, 4), np.zeros(5), np.zeros(4)]


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_the_gradient_of_a_matrix_is_a_matrix_of_its_values_adjoints(kind):
    A = _matrix(kind)
    adsrc.check_grads(mk.products, _products_args(A), ("A", "x"), ("return",))
    gradient, x_bar = adsrc.grad(mk.products, wrt=("A", "x"))(*_products_args(A))
    assert type(gradient) is type(A) and gradient.format == A.format
    # the same kernel on the CSR arrays, an independent spelling: the same derivative
    csr = sp.csr_matrix(A)
    reference = adsrc.grad(mk.products_of_arrays, wrt=("data", "x"))(
        csr.data.copy(), csr.indices, csr.indptr, *_products_args(A)[1:])
    np.testing.assert_allclose(sp.csr_matrix(gradient).toarray(),
                               sp.csr_matrix((reference[0], csr.indices, csr.indptr),
                                             shape=csr.shape).toarray(), rtol=1e-12)
    np.testing.assert_allclose(x_bar, reference[1], rtol=1e-12)


@pytest.mark.parametrize("kind", ["csr", "coo"])
def test_the_tangent_along_a_matrix_passes_the_dot_product_test(kind):
    A = _matrix(kind)
    rng = np.random.default_rng(1)
    direction = A.copy()
    direction.data = rng.standard_normal(A.nnz)
    f = adsrc.differentiate(mk.products, wrt="A", outputs="return")
    (tangent,) = f.tangent(*_products_args(A), A_dot=direction)
    (gradient,) = f.adjoint(*_products_args(A), out_bar=1.0)
    assert tangent == pytest.approx(float(np.dot(gradient.data, direction.data)), rel=1e-10)


def test_the_compliance_gradient_of_a_stiffness_matrix_is_its_closed_form():
    K = sp.csr_array(sp.diags([-1.0, 2.5, -1.0], [-1, 0, 1], shape=(6, 6)))
    f = np.linspace(1.0, 2.0, 6)
    K_bar, f_bar = adsrc.grad(mk.compliance, wrt=("K", "f"))(K, f, np.zeros(6))
    u = sp.linalg.spsolve(K.tocsc(), f)
    rows, columns = K.nonzero()
    np.testing.assert_allclose(K_bar.toarray()[rows, columns], -(u[rows] * u[columns]),
                               rtol=1e-12)
    np.testing.assert_allclose(f_bar, 2 * u, rtol=1e-12)         # K symmetric


def test_matrix_arguments_that_adsrc_cannot_take_are_refused_before_anything_runs():
    A = _matrix("csr")
    args = _products_args(A)
    kernel = adsrc.differentiate(mk.products, wrt="A", outputs=("y",))
    with pytest.raises(adsrc.ArgumentError, match="BSR"):
        kernel.adjoint(sp.bsr_matrix(A), *args[1:], y_bar=np.ones(5))
    with pytest.raises(adsrc.ArgumentError, match="must hold float64 values"):
        kernel.adjoint(A.astype(np.float32), *args[1:], y_bar=np.ones(5))
    with pytest.raises(adsrc.ArgumentError, match="A_dot must be a sparse matrix with the format "
                                                  "and pattern of A"):
        kernel.tangent(*args, A_dot=_matrix("csc"))
    with pytest.raises(adsrc.ArgumentError, match="'A' cannot be an output"):
        adsrc.differentiate(mk.products, wrt="x", outputs=("A",)).adjoint(*args,
                                                                          A_bar=A.copy())
    with pytest.raises(adsrc.ArgumentError, match="A_dot must be a sparse matrix"):
        adsrc.hvp(mk.products, wrt="A")(*args, A_dot=np.ones(A.nnz))
    with pytest.raises(adsrc.ArgumentError, match="for H v with respect to the sparse matrix "
                                                  "'A', use adsrc.hvp"):
        adsrc.hessian_operator(mk.products, *args, wrt="A")
    square, x = sp.eye(4, format="csr") * 2.0, np.ones(4)
    with pytest.raises(adsrc.ArgumentError, match="not through a checkpointed loop"):
        adsrc.grad(mk.checkpointed_products, wrt="x")(square, x, np.zeros(4), 3)
    assert np.all(x == 1.0)
    with pytest.raises(adsrc.UnsupportedError, match="the kernel names 'A_data'"):
        adsrc.grad(mk.clashing_name, wrt="A")(A, np.ones(4), np.zeros(5))
    assert np.all(args[2] == 0.0) and np.all(args[3] == 0.0)


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_a_matrix_adjoint_passed_in_has_the_gradient_added_into_it(kind):
    """``A_bar=`` given a matrix of A's pattern: the call adds the gradient into its values and
    returns it, as it does for an array's ``x_bar=``; against the kernel taking the CSR arrays
    given the same start, and against the gradient of a call without A_bar=."""
    A = _matrix(kind)
    start = A.copy()
    start.data = np.random.default_rng(5).standard_normal(A.nnz)
    A_bar = start.copy()
    kernel = adsrc.differentiate(mk.products, wrt=("A", "x"), outputs="return")
    returned, _ = kernel.adjoint(*_products_args(A), A_bar=A_bar)
    assert returned is A_bar
    (fresh, _) = kernel.adjoint(*_products_args(A))
    np.testing.assert_allclose(A_bar.data, start.data + fresh.data, rtol=1e-13)
    csr, csr_start = sp.csr_matrix(A), sp.csr_matrix(start)
    data_bar = csr_start.data.copy()
    adsrc.differentiate(mk.products_of_arrays, wrt=("data", "x"), outputs="return").adjoint(
        csr.data.copy(), csr.indices, csr.indptr, *_products_args(A)[1:], data_bar=data_bar)
    np.testing.assert_allclose(sp.csr_matrix(A_bar).toarray(),
                               sp.csr_matrix((data_bar, csr.indices, csr.indptr),
                                             shape=csr.shape).toarray(), rtol=1e-13)


def test_a_matrix_argument_is_named_as_the_caller_wrote_it():
    """The kernel adsrc derives takes A's arrays (A_data, ...): its names were the ones the
    errors used and the keywords it accepted (A_data_bar=), while A_bar=<matrix> was refused."""
    A = _matrix("csr")
    kernel = adsrc.differentiate(mk.products, wrt=("A", "x"), outputs="return")
    for call, key in ((kernel.adjoint, "A_data_bar"), (kernel.tangent, "A_data_dot"),
                      (kernel.adjoint, "A_rows_bar")):
        with pytest.raises(adsrc.ArgumentError, match=rf"unexpected \w+ '{key}'; the \w+ of the "
                                                      r"sparse matrix 'A' is A_(bar|dot)="):
            call(*_products_args(A), **{key: np.zeros(A.nnz)})
    with pytest.raises(adsrc.ArgumentError, match="unexpected direction 'A_dott'; this call "
                                                  "takes A_dot, x_dot$"):
        kernel.tangent(*_products_args(A), A_dott=A.copy())
    for wrong in (None, np.zeros(A.nnz), _matrix("csc")):
        with pytest.raises(adsrc.ArgumentError, match="A_bar must be a sparse matrix with the "
                                                      "format and pattern of A"):
            kernel.adjoint(*_products_args(A), A_bar=wrong)
    with pytest.raises(adsrc.ArgumentError, match="A_bar must hold float64 values"):
        kernel.adjoint(*_products_args(A), A_bar=A.astype(np.float32))
    with pytest.raises(adsrc.ArgumentError, match="'A' and 'A_bar' share memory"):
        kernel.adjoint(*_products_args(A), A_bar=A)
    assert np.array_equal(A.data, _matrix("csr").data)


def _fourth_order(function, h):
    """The derivative of ``function`` at 0 by fourth-order central differences of step h."""
    return (-function(2 * h) + 8 * function(h) - 8 * function(-h) + function(-2 * h)) / (12 * h)


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_hessian_vector_products_with_a_matrix_argument(kind):
    """H v with respect to x, by hvp, the operator's matvec and matmat, against finite
    differences of the gradient and against the kernel taking the CSR arrays."""
    A = _matrix(kind)
    v = np.random.default_rng(2).standard_normal(4)
    hv = adsrc.hvp(mk.products, wrt="x")(*_products_args(A), x_dot=v)
    grad = adsrc.grad(mk.products, wrt="x")

    def gradient_at(h):
        args = _products_args(A)
        args[1] = args[1] + h * v
        return grad(*args)

    np.testing.assert_allclose(hv, _fourth_order(gradient_at, 1e-4), rtol=1e-7, atol=1e-9)
    csr = sp.csr_matrix(A)
    reference = adsrc.hvp(mk.products_of_arrays, wrt="x")(
        csr.data, csr.indices, csr.indptr, *_products_args(A)[1:], x_dot=v)
    np.testing.assert_allclose(hv, reference, rtol=1e-12, atol=1e-14)
    hessian = adsrc.hessian_operator(mk.products, *_products_args(A), wrt="x")
    np.testing.assert_allclose(hessian.matvec(v), hv, rtol=1e-12, atol=1e-14)
    stacked = np.column_stack([v, 2.0 * v])
    np.testing.assert_allclose(hessian.matmat(stacked), np.column_stack([hv, 2.0 * hv]),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["csr", "csc", "coo"])
def test_the_hessian_operator_of_a_kernel_solving_with_a_matrix_argument(kind):
    """The compliance f . K^-1 f has the Hessian K^-1 + K^-T in f (K unsymmetric here): the
    operator's products against it and against hvp (the operator refused the call before:
    its aliasing check read the kernel as written, whose spsolve names the matrix)."""
    K = MAKERS[kind](sp.diags([-1.0, 2.5, -0.5], [-1, 0, 1], shape=(6, 6)))
    f, v = np.linspace(1.0, 2.0, 6), np.random.default_rng(4).standard_normal(6)
    inverse = np.linalg.inv(K.toarray())
    hessian = adsrc.hessian_operator(mk.compliance, K, f, np.zeros(6), wrt="f")
    np.testing.assert_allclose(hessian.matvec(v), (inverse + inverse.T) @ v, rtol=1e-12)
    np.testing.assert_allclose(hessian.matvec(v), adsrc.hvp(mk.compliance, wrt="f")(
        K, f, np.zeros(6), f_dot=v), rtol=1e-13)
    np.testing.assert_allclose(hessian.gradient, (inverse + inverse.T) @ f, rtol=1e-12)
    u = np.zeros(6)
    with pytest.raises(adsrc.ArgumentError, match="share memory"):
        adsrc.hessian_operator(mk.compliance, K, u, u, wrt="f")


@pytest.mark.parametrize("kind", ["csr", "csc", "coo"])
def test_hessian_vector_products_with_respect_to_a_matrix(kind):
    """The compliance f . K^-1 f: its gradient with respect to K's stored values is
    -l_i u_j (u = K^-1 f, l = K^-T f), and H V is -(dl_i u_j + l_i du_j) with du = -K^-1 V u
    and dl = -K^-T V^T l (K is symmetric, so l = u); against finite differences of the
    gradient too.  The product is a matrix of K's class and pattern."""
    K = MAKERS[kind](sp.diags([-1.0, 2.5, -1.0], [-1, 0, 1], shape=(6, 6)))
    f = np.linspace(1.0, 2.0, 6)
    V = K.copy()
    V.data = np.random.default_rng(3).standard_normal(K.nnz)
    hv = adsrc.hvp(mk.compliance, wrt="K")(K, f, np.zeros(6), K_dot=V)
    assert type(hv) is type(K) and hv.format == K.format
    dense, direction = sp.csr_matrix(K).toarray(), sp.csr_matrix(V).toarray()
    u = np.linalg.solve(dense, f)
    du = -np.linalg.solve(dense, direction @ u)
    dl = -np.linalg.solve(dense.T, direction.T @ u)
    rows, columns = sp.coo_matrix(K).row, sp.coo_matrix(K).col
    np.testing.assert_allclose(sp.coo_matrix(hv).data,
                               -(dl[rows] * u[columns] + u[rows] * du[columns]), rtol=1e-10)
    grad = adsrc.grad(mk.compliance, wrt="K")

    def gradient_at(h):
        moved = K.copy()
        moved.data = K.data + h * V.data
        return grad(moved, f, np.zeros(6)).data

    np.testing.assert_allclose(hv.data, _fourth_order(gradient_at, 1e-4), rtol=1e-7,
                               atol=1e-9)


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_the_jacobian_of_a_kernel_with_a_matrix_argument(kind):
    """Columns for the matrix's stored values, then x's; rows for y: against central
    differences of the primal, in both modes."""
    A = _matrix(kind)
    args = _products_args(A)

    def y_of(values, x):
        moved = A.copy()
        moved.data = values
        y = np.zeros(5)
        mk.products(moved, x, y, np.zeros(4))
        return y

    x = args[1]
    columns = []
    for index in range(A.nnz + x.size):
        step = np.zeros(A.nnz + x.size)
        step[index] = 1e-6
        columns.append((y_of(A.data + step[:A.nnz], x + step[A.nnz:])
                        - y_of(A.data - step[:A.nnz], x - step[A.nnz:])) / 2e-6)
    for mode in ("forward", "reverse"):
        jac = adsrc.jacobian(mk.products, wrt=("A", "x"), outputs=("y",), mode=mode)(*args)
        np.testing.assert_allclose(jac, np.column_stack(columns), rtol=1e-6, atol=1e-8)
    assert np.all(args[2] == 0.0)           # the arguments are left as they were


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_a_matrix_with_more_columns_than_its_vector_is_refused(backend):
    """A 5 x 6 matrix times a vector of 5 (SciPy: 'dimension mismatch'): adsrc shaped the matrix
    by the vector and SciPy's product, which trusts the column indices, read and wrote past
    the end of its vectors; the compiled backend then died of a heap corruption.  The column
    index outside the matrix is refused (SciPy's own 'dimension mismatch' where the matrix
    says it has 6 columns), and nothing of the user's changed."""
    wide = sp.random(5, 6, density=0.6, format="csr", random_state=0)
    assert wide.indices.max() == 5
    mislabelled = sp.csr_matrix((wide.data, wide.indices, wide.indptr), shape=(5, 5))
    x, y, z = np.ones(5), np.zeros(5), np.zeros(5)
    kernel = adsrc.differentiate(mk.products, wrt=("A", "x"), outputs=("y",), backend=backend)
    with pytest.raises(ValueError, match="dimension mismatch"):
        kernel.adjoint(wide, x, y, z, y_bar=np.ones(5))
    with pytest.raises(ValueError, match=r"column index of the sparse matrix \(from 0 to 5\) "
                                         r"is outside its 5 columns"):
        kernel.adjoint(mislabelled, x, y, z, y_bar=np.ones(5))
    with pytest.raises(AssertionError, match="a solve needs a square matrix"):
        adsrc.grad(mk.compliance, wrt="K", backend=backend)(wide, x, y)
    with pytest.raises(ValueError, match="outside its 5 columns"):
        adsrc.grad(mk.compliance, wrt="K", backend=backend)(mislabelled, x, y)
    assert np.all(x == 1.0) and not y.any() and not z.any()


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_an_error_in_a_kernel_taking_a_matrix_names_the_users_file(backend):
    """The kernel that takes a matrix argument's arrays is derived from the user's: an error
    its rule calls raise was located in '<adsrc: compliance, derived from ...>'."""
    square = sp.diags([-1.0, 2.5, -1.0], [-1, 0, 1], shape=(5, 5), format="csr")
    with pytest.raises(adsrc.AdsrcError) as info:
        adsrc.grad(mk.compliance, wrt="K", backend=backend)(square, np.ones(5), np.zeros(6))
    line = inspect.getsourcelines(mk.compliance)[1] + 2
    assert str(info.value).startswith(f"{inspect.getsourcefile(mk.compliance)}:{line}: "), \
        str(info.value)
    assert "returned an array of shape (5,), stored into an array of shape (6,)" in \
        str(info.value)
