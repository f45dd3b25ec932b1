"""Which indices the compiled code wraps (adds the length to, when negative, as Python does):
those that may be negative at run time (adsrc.analyses.index_bounds), and no others, since a
wrap in an inner loop costs a compare and can keep the C compiler from vectorising it.

That a wrapped index gives Python's values and derivatives is tested in test_subset (the
periodic kernels, on both backends, against finite differences and the tangent).  With
$ADSRC_BOUNDSCHECK=1 the compiled code checks every index, and one outside its array raises
IndexError."""

import glob
import inspect
import os
import re

import numpy as np
import pytest

import adsrc
import index_kernels as K
from adsrc.backends.cython import BOUNDSCHECK_VARIABLE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRAPPED = re.compile(r"(\w+)\[_wrap\(")


def _wrapped_arrays(kernel, args, wrt):
    f = adsrc.differentiate(kernel, wrt=wrt, outputs=("y",), backend="python")
    source = f.source("adjoint", args=args, backend="cython")
    return set(WRAPPED.findall(source))


def _vectors(n=6):
    rng = np.random.default_rng(3)
    return rng.uniform(0.5, 1.5, n), np.zeros(n)


@pytest.mark.parametrize("kernel", [K.interior_stencil, K.descending_shift, K.modulo_wrap],
                         ids=["interior_stencil", "descending_shift", "modulo_wrap"])
def test_indices_that_cannot_be_negative_are_not_wrapped(kernel):
    assert _wrapped_arrays(kernel, _vectors(), ("x",)) == set()


def test_elements_of_index_arrays_are_not_wrapped():
    indptr = np.array([0, 2, 3, 5], dtype=np.int32)
    indices = np.array([0, 2, 1, 0, 2], dtype=np.int32)
    args = (indptr, indices, np.ones(5), np.ones(3), np.zeros(3))
    assert _wrapped_arrays(K.csr_gather, args, ("data", "x")) == set()


# kernel, its arguments, the arrays whose indices are wrapped: the read x[...] in the primal
# and the sweeps, and its adjoint x_bar[...] += in the reverse sweep
MAY_BE_NEGATIVE = [
    pytest.param(K.periodic_shift, _vectors(), {"x", "x_bar"}, id="periodic_shift"),
    pytest.param(K.reversal, _vectors(), {"x", "x_bar"}, id="reversal"),
    # k indexes y as well
    pytest.param(K.countdown, _vectors(), {"x", "x_bar", "y", "y_bar"}, id="countdown"),
    pytest.param(K.parameter_shift, (*_vectors(), -2), {"x", "x_bar"}, id="parameter_shift"),
]


@pytest.mark.parametrize("kernel, args, wrapped", MAY_BE_NEGATIVE)
def test_indices_that_may_be_negative_are_wrapped_in_primal_and_adjoint(kernel, args, wrapped):
    assert _wrapped_arrays(kernel, args, ("x",)) == wrapped


@pytest.mark.parametrize("kernel, args, wrapped", MAY_BE_NEGATIVE)
def test_wrapped_kernels_agree_with_python(kernel, args, wrapped):
    want = [np.copy(a) if isinstance(a, np.ndarray) else a for a in args]
    kernel(*want)
    got = [np.copy(a) if isinstance(a, np.ndarray) else a for a in args]
    adsrc.differentiate(kernel, wrt=("x",), outputs=("y",), backend="cython").primal(*got)
    np.testing.assert_array_equal(got[1], want[1])


def test_the_shipped_kernels_wrap_no_index():
    generated = glob.glob(os.path.join(ROOT, "kernels", "generated", "*.pyx"))
    assert generated
    for path in generated:
        with open(path) as handle:
            assert "_wrap(" not in handle.read(), path


def _csr_args(bad=None):
    """csr_gather's arguments; ``bad`` replaces an element of its index array."""
    indptr = np.array([0, 2, 3, 5], dtype=np.int32)
    indices = np.array([0, 2, 1, 0, 2], dtype=np.int32)
    if bad is not None:
        indices[3] = bad
    return indptr, indices, np.linspace(0.5, 1.5, 5), np.array([0.3, -0.2, 0.7]), np.zeros(3)


def _runs(f, args):
    """The primal's, the adjoint's and the tangent's results of ``f`` on copies of ``args``."""
    copied = [np.array(arg, copy=True) for arg in args]
    f.primal(*copied)
    return [copied[-1], *f.adjoint(*[np.array(arg, copy=True) for arg in args],
                                   y_bar=np.ones(3)),
            *f.tangent(*[np.array(arg, copy=True) for arg in args], x_dot=np.ones(3))]


def test_with_boundscheck_an_index_outside_the_array_raises(monkeypatch):
    """$ADSRC_BOUNDSCHECK=1 builds modules that check every index: an element of an index array
    past the end of the array it indexes, or negative (which the compiled code takes to be a
    valid index otherwise), raises IndexError in the primal, the adjoint and the tangent, and
    valid ones give the values of the unchecked build.  The setting is part of the source key,
    so the unchecked module of the same kernel, types and wrt is not reused."""
    wrt, outputs = ("data", "x"), ("y",)
    unchecked = adsrc.differentiate(K.csr_gather, wrt=wrt, outputs=outputs, backend="cython")
    want = _runs(unchecked, _csr_args())
    assert "boundscheck=False" in unchecked.source("adjoint")
    monkeypatch.setenv(BOUNDSCHECK_VARIABLE, "1")
    checked = adsrc.differentiate(K.csr_gather, wrt=wrt, outputs=outputs, backend="cython")
    for got, expected in zip(_runs(checked, _csr_args()), want):
        np.testing.assert_array_equal(got, expected)
    assert "boundscheck=True" in checked.source("adjoint")
    where = re.escape(f"{inspect.getsourcefile(K.csr_gather)}:{_line_of(K.csr_gather)}: an "
                      f"index outside its array in '{GATHER}' (Cython: Out of bounds")
    for bad in (3, -1):
        for run in _calls(checked, bad):
            with pytest.raises(IndexError, match=where):
                run()


GATHER = "acc += data[k] * x[indices[k]]"


def _line_of(kernel, statement=GATHER):
    lines, first = inspect.getsourcelines(kernel)
    return first + next(i for i, line in enumerate(lines) if line.strip() == statement)


def _calls(f, bad):
    """The primal, the adjoint and the tangent of ``f`` on arguments with a bad index."""
    return [lambda: f.primal(*_csr_args(bad)),
            lambda: f.adjoint(*_csr_args(bad), y_bar=np.ones(3)),
            lambda: f.tangent(*_csr_args(bad), x_dot=np.ones(3))]


def test_with_boundscheck_an_index_outside_the_array_of_a_called_kernel_names_its_line(
        monkeypatch):
    """The IndexError names the line of the called kernel and quotes its statement; the kernel
    is not named as the file, which the generated comments do not record."""
    monkeypatch.setenv(BOUNDSCHECK_VARIABLE, "1")
    checked = adsrc.differentiate(K.calls_csr_gather, wrt=("data", "x"), outputs=("y",),
                                  backend="cython")
    where = re.escape(f"line {_line_of(K.csr_gather)} of a kernel that calls_csr_gather calls: "
                      f"an index outside its array in '{GATHER}'")
    for run in _calls(checked, 7):
        with pytest.raises(IndexError, match=where):
            run()


def test_with_boundscheck_an_index_outside_the_array_after_a_continue_names_its_line(
        monkeypatch):
    """Structuring a continue puts the statements after its 'if' under a flag's 'if'; that
    'if' was placed at the continuing one's line with every statement it guards, so the error
    named the line of 'if x[i] > 0.0:' and quoted it."""
    monkeypatch.setenv(BOUNDSCHECK_VARIABLE, "1")
    kernel = K.csr_gather_after_a_continue
    checked = adsrc.differentiate(kernel, wrt=("data", "x"), outputs=("y",), backend="cython")
    where = re.escape(f"{inspect.getsourcefile(kernel)}:{_line_of(kernel)}: an index outside "
                      f"its array in '{GATHER}'")
    for run in _calls(checked, 3):
        with pytest.raises(IndexError, match=where):
            run()


def test_the_compiled_functions_are_one_layer_around_the_modules_own():
    """Every build's functions, checked or not, are the module's own under a single layer that
    names the user's line in their errors (adsrc.backends.located_errors): one Python call
    more per function, no more."""
    f = adsrc.differentiate(K.csr_gather, wrt=("data", "x"), outputs=("y",), backend="cython")
    f.primal(*_csr_args())
    compiled = f._compile(f._last_signature)
    for function in (compiled.primal, compiled.forward, compiled.reverse):
        inner = function.__wrapped__
        assert not hasattr(inner, "__wrapped__")
        assert type(inner).__name__ == "cython_function_or_method"
