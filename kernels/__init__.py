"""adsrc.kernels: the solver kernels shipped with adsrc (installed from the ``kernels/`` folder)."""

from adsrc.kernels.solvers import (  # noqa: F401
    gauss_seidel,
    gauss_seidel_backward,
    gauss_seidel_symmetric,
    jacobi_csr,
    jacobi_damped,
    lower_solve,
    sor,
    spmv,
    spmv_transpose,
    upper_solve,
)
