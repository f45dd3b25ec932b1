"""adsrc: source-transformation automatic differentiation of in-place numeric kernels.

The public API is what this module exports; everything else is internal.
"""

__version__ = "0.1.0"

from adsrc.api import Differentiable, differentiate, grad, value_and_grad  # noqa: E402
from adsrc.checking import check_grads  # noqa: E402
from adsrc.checkpointing import CheckpointStats, checkpointed  # noqa: E402
from adsrc.errors import AdsrcError, ArgumentError, UnsupportedError  # noqa: E402
from adsrc.jacobians import jacobian, jvp  # noqa: E402
from adsrc.rules.library import rule  # noqa: E402
from adsrc.runtime.tape import TapeStats  # noqa: E402

__all__ = [
    "AdsrcError", "ArgumentError", "CheckpointStats", "Differentiable", "HessianOperator",
    "TapeStats", "UnsupportedError", "check_grads", "checkpointed", "differentiate", "grad",
    "hessian_operator", "hvp", "jacobian", "jvp", "rule", "value_and_grad",
]

# Hessian-vector products are imported at their first use: their operator is a SciPy
# LinearOperator, and importing SciPy takes longer than importing adsrc without it
# (benchmarks/OVERHEAD.md)
_IMPORTED_ON_USE = {"HessianOperator": "adsrc.hessians", "hessian_operator": "adsrc.hessians",
                    "hvp": "adsrc.hessians"}


def __getattr__(name):
    if name in _IMPORTED_ON_USE:
        import importlib
        return getattr(importlib.import_module(_IMPORTED_ON_USE[name]), name)
    raise AttributeError(f"module 'adsrc' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_IMPORTED_ON_USE))
