"""Loops that read only behind themselves (adsrc.analyses.reads_behind): forward and back
substitution, and recurrences over x[i - 1] or x[i + 1], overwrite x[i] without saving its old
value, since no reverse iteration reads it.

On both backends: the tape holds no float (tape statistics), and the gradient passes
``adsrc.check_grads`` (finite differences) and the dot-product test against the complex step of
the plain kernel; the triangular solves also match their hand adjoints.  Loops that read ahead
of themselves, read the element they overwrite, move a guarded index, or run again inside a
sweep loop still save the old values, and their gradients are right too.
"""

import numpy as np
import pytest

import adsrc
import complex_step
import reads_behind_kernels as K
from corpus.hand_adjoints import CASES as CORPUS

pytestmark = pytest.mark.usefixtures("backend")   # every test on both backends

N = 8


def _x(seed=0):
    return np.random.default_rng(seed).uniform(0.5, 1.0, N)


def _corpus(name):
    case = next(case for case in CORPUS if case.name == name)
    return (case.kernel, lambda: case.make_args(np.random.default_rng(4), np.int32), case.wrt,
            case.outputs)


def _csr():
    """A 4x4 matrix with entries on both sides of the diagonal."""
    dense = np.array([[4.0, 1.0, 0.0, 0.5], [1.0, 5.0, 0.3, 0.0], [0.0, 0.3, 6.0, 1.0],
                      [0.5, 0.0, 1.0, 7.0]])
    rows, cols = np.nonzero(dense)
    indptr = np.searchsorted(rows, np.arange(5)).astype(np.int32)
    return indptr, cols.astype(np.int32), dense[rows, cols]


def _csr_args():
    indptr, indices, data = _csr()
    return indptr, indices, data, _x()[:4]


# name -> (kernel, make arguments, wrt, outputs)
BEHIND = {
    "lower_solve": _corpus("lower_solve"),
    "upper_solve": _corpus("upper_solve"),
    "prefix": (K.prefix_recurrence, lambda: (_x(), _x(1), 0.7), ("x", "y", "c"), ("x",)),
    "suffix": (K.suffix_recurrence, lambda: (_x(), 0.3), ("x", "c"), ("x",)),
}
SAVING = {
    "reads_ahead": (K.reads_ahead, lambda: (_x(), 0.7), ("x", "c"), ("x",)),
    "reads_own": (K.reads_own, lambda: (_x(), 0.7), ("x", "c"), ("x",)),
    "guarded_wrong_way": (K.guarded_wrong_way, _csr_args, ("data", "x"), ("x",)),
    "guard_then_moved": (K.guard_then_moved, _csr_args, ("data", "x"), ("x",)),
    "periodic": (K.periodic_recurrence, lambda: (_x(), 0.7), ("x", "c"), ("x",)),
    # negative indices, which wrap round to elements written later (or earlier)
    "guarded_by_arithmetic": (K.guarded_by_arithmetic, lambda: (_x(), _x(1)), ("x", "a"),
                              ("x",)),
    "counter_down_to_minus_one": (K.counter_down_to_minus_one, lambda: (_x(), _x(1)),
                                  ("x", "a"), ("x",)),
    "repeated": (K.repeated_recurrence, lambda: (_x(), 0.2 * _x(1), 0.3, 3), ("x", "y", "c"),
                 ("x",)),
}
ALL = {**BEHIND, **SAVING}


def _copies(args):
    return [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]


def _tape_stats(name):
    kernel, make, wrt, outputs = ALL[name]
    args = make()
    f = adsrc.differentiate(kernel, wrt=wrt, outputs=outputs)
    f.adjoint(*_copies(args), **{o + "_bar": np.ones_like(args[_position(kernel, o)])
                                 for o in outputs})
    return f.adjoint.last_tape_stats


def _position(kernel, param):
    return kernel.__code__.co_varnames.index(param)


@pytest.mark.parametrize("name", sorted(BEHIND))
def test_no_old_value_is_saved(name):
    stats = _tape_stats(name)
    assert stats.floats_pushed == 0
    assert stats.arrays_copied == 0


@pytest.mark.parametrize("name", sorted(SAVING))
def test_old_values_are_saved_where_the_reverse_sweep_reads_them(name):
    assert _tape_stats(name).floats_pushed > 0


@pytest.mark.parametrize("name", sorted(ALL))
def test_check_grads(name):
    kernel, make, wrt, outputs = ALL[name]
    adsrc.check_grads(kernel, make(), wrt=wrt, outputs=outputs, rtol=1e-7)


@pytest.mark.parametrize("name", sorted(ALL))
def test_dot_product_against_complex_step(name):
    kernel, make, wrt, outputs = ALL[name]
    f = adsrc.differentiate(kernel, wrt=wrt, outputs=outputs)
    forward, reverse = complex_step.dot_product_test(f, kernel, make(), wrt, outputs,
                                                     np.random.default_rng(5))
    assert reverse == pytest.approx(forward, rel=1e-12)
    assert abs(forward) > 1e-3


@pytest.mark.parametrize("name", ["lower_solve", "upper_solve"])
def test_triangular_solves_match_their_hand_adjoints(name):
    case = next(case for case in CORPUS if case.name == name)
    args = case.make_args(np.random.default_rng(6), np.int32)
    x_bar = np.random.default_rng(7).standard_normal(np.shape(args[3]))
    f = adsrc.differentiate(case.kernel, wrt=case.wrt, outputs=case.outputs)
    data_bar, x0_bar = f.adjoint(*_copies(args), x_bar=x_bar.copy())
    want = case.hand_adjoint(*args, x_bar=x_bar)
    np.testing.assert_allclose(data_bar, want["data"], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(x0_bar, want["x"], rtol=1e-11, atol=1e-13)
