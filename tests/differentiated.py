"""Helpers shared by test modules: one Differentiable per kernel, wrt, outputs and backend
across a module's tests (so their compiled modules are reused), argument copies, the comparison
of gradients to the 1e-12 relative the checkpointing issue asks for, and of a generated primal
with the kernel run by Python."""

import numpy as np
import pytest

import adsrc

RTOL = 1e-12

_MADE = {}


def differentiated(fn, wrt, outputs, backend):
    key = (fn, wrt, outputs, backend)
    if key not in _MADE:
        _MADE[key] = adsrc.differentiate(fn, wrt=wrt, outputs=outputs, backend=backend)
    return _MADE[key]


def copies(values):
    return tuple(np.array(v, copy=True) if isinstance(v, np.ndarray) else v for v in values)


def assert_gradients_close(got, want, names):
    """Every gradient within RTOL of ``want``'s, relative to its largest entry (arrays) or to
    itself (floats, which must stay floats)."""
    for name, g, w in zip(names, got, want):
        if isinstance(w, np.ndarray):
            scale = max(float(np.max(np.abs(w))), 1e-300)
            assert float(np.max(np.abs(g - w))) <= RTOL * scale, name
        else:
            assert isinstance(g, float), name
            assert g == pytest.approx(w, rel=RTOL, abs=1e-300), name


def assert_primal_is_pythons(kernel, args, wrt, outputs, rtol, atol):
    """The generated primal of ``kernel`` against the kernel run by Python, each on copies of
    ``args``: the value it returns (or None) and the arrays it leaves, to ``rtol`` and
    ``atol``."""
    want, got = copies(args), copies(args)
    returned = kernel(*want)
    mine = adsrc.differentiate(kernel, wrt=wrt, outputs=outputs).primal(*got)
    assert (mine is None) == (returned is None)
    if returned is not None:
        assert mine == pytest.approx(returned, rel=rtol)
    for mine, python in zip(got, want):
        np.testing.assert_allclose(mine, python, rtol=rtol, atol=atol)
