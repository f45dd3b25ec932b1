"""The complex step (tests/complex_step.py), the reference many dot-product tests compare
adsrc's adjoints with: it must give J v for every output, and fail loudly where it cannot."""

import numpy as np
import pytest
import scipy.sparse as sp

from adsrc.kernels import jacobi_damped, spmv
from complex_step import jvp
from corpus.problems import poisson2d_csr


def _csr(m=3):
    indptr, indices, data = poisson2d_csr(m, np.int32)
    return indptr, indices, data, sp.csr_matrix((data, indices, indptr))


def test_an_output_not_differentiated_carries_its_tangent():
    # y is written, not read: it is no wrt argument, yet J v lands in it
    indptr, indices, data, a = _csr()
    n = a.shape[0]
    rng = np.random.default_rng(3)
    x, v = rng.standard_normal(n), rng.standard_normal(n)
    got = jvp(spmv, (indptr, indices, data, x, np.zeros(n)), ("x",), ("y",), {"x": v})
    np.testing.assert_allclose(got["y"], a @ v, rtol=1e-14, atol=1e-14)


def test_a_tangent_stored_into_a_real_array_of_the_kernel_raises():
    # jacobi_damped keeps its residual in np.zeros(n), a float array: the complex step cannot
    # run through it, and says so rather than returning a derivative without that path
    indptr, indices, data, a = _csr()
    n = a.shape[0]
    args = (indptr, indices, data, 1.0 / a.diagonal(), np.zeros(n), np.ones(n), 0.5, 2)
    with pytest.raises(np.exceptions.ComplexWarning):
        jvp(jacobi_damped, args, ("b",), ("x",), {"b": np.ones(n)})
