"""Sparse matrix products and solves that kernels can call and adsrc can differentiate.

A kernel holds a CSR matrix as ``(data, indices, indptr)``; ``data`` may be active.  See
:mod:`adsrc.rules.sparse` for the derivative rules (implicit adjoint of the solve, adjoints on
the sparsity pattern only).
"""

from adsrc.rules.sparse import cg, gmres, matvec, rmatvec, spsolve, spsolve_transposed

__all__ = ["cg", "gmres", "matvec", "rmatvec", "spsolve", "spsolve_transposed"]
