"""Helpers shared by the checkpointing tests: one Differentiable per kernel, wrt, outputs and
backend across a module's tests (so their compiled modules are reused), and argument copies."""

import numpy as np

import adsrc

_MADE = {}


def differentiated(fn, wrt, outputs, backend):
    key = (fn, wrt, outputs, backend)
    if key not in _MADE:
        _MADE[key] = adsrc.differentiate(fn, wrt=wrt, outputs=outputs, backend=backend)
    return _MADE[key]


def copies(values):
    return tuple(np.array(v, copy=True) if isinstance(v, np.ndarray) else v for v in values)
