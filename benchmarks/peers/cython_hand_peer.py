"""Hand-written Cython adjoints (peers/hand_adjoints.pyx) of the kernels whose compiled primal is
much faster in Cython than in Numba (damped and weighted Jacobi, SpMV and SpMV^T), and of the
triangular solves, whose quotient against the Numba hand moves around 1.1 from run to run.

The Numba hand adjoint is the issue's reference, but its adjoint/primal ratio depends on the
compiler as much as on the adjoint code: where adsrc's Cython primal takes 0.6-0.75x the time of
Numba's, the same adjoint work is a larger multiple of it.  These are the same hand adjoints,
compiled with adsrc's own Cython directives and C flags (``adsrc.compiling.cython_build``),
timed beside adsrc and Numba: their ratio is the hand adjoint's with the compiler held equal,
and ``benchmarks/layout.py`` takes it over several code layouts.
"""

import os

from peers import hand

NAME = "Cython hand"
_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hand_adjoints.pyx")
KERNELS = ("jacobi_damped", "jacobi_csr", "spmv", "spmv_transpose", "lower_solve",
           "upper_solve")
_module = None


def load():
    """Compiles hand_adjoints.pyx (cached by adsrc like a generated module)."""
    global _module
    import Cython
    from adsrc.compiling import cython_build

    with open(_SOURCE) as handle:
        _module = cython_build.load(handle.read(), "bench_hand_adjoints")
    return f"Cython {Cython.__version__}, adsrc's flags"


def build(spec, problem):
    primals = {name: getattr(_module, name) for name in KERNELS}
    adjoints = {name: getattr(_module, name + "_adj") for name in KERNELS}
    return hand.cases(primals, adjoints, spec, problem)


def verify(spec, problem):
    """None for a kernel without a Cython hand adjoint, else as ``hand.verify``."""
    if spec.name not in KERNELS:
        return None
    primals = {name: getattr(_module, name) for name in KERNELS}
    adjoints = {name: getattr(_module, name + "_adj") for name in KERNELS}
    return hand.verify(primals, adjoints, spec, problem, "Cython")
