"""SciPy sparse matrices passed to a kernel (adsrc/matrix_arguments.py): gradients with respect to
a matrix's stored values against finite differences, against the same kernel taking the arrays,
and against the tangent (dot-product test); the closed form of a compliance gradient; errors."""

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
    with pytest.raises(adsrc.ArgumentError, match="pass its arrays"):
        adsrc.hvp(mk.products, wrt="x")(*args[:1], args[1], np.ones(4), *args[2:])
    with pytest.raises(adsrc.UnsupportedError, match="the kernel names 'A_data'"):
        adsrc.grad(mk.clashing_name, wrt="A")(A, np.ones(4), np.zeros(5))
    assert np.all(args[2] == 0.0) and np.all(args[3] == 0.0)
