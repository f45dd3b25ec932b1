"""Loop locals recomputed from frozen values (adsrc.analyses.recompute, adsrc.analyses.tbr).

Each kernel of tests/recompute_kernels.py reads, inside a loop, values that the loop never
writes but that something later overwrites.  The reverse sweep recomputes the loop's locals
from them instead of recording the locals, so the to-be-recorded analysis must restore those
values before the reverse sweep re-enters the loop.  Checked three ways, on both backends:

* ``adsrc.check_grads`` (finite differences against the adjoint);
* the dot-product test against an independent forward method, the complex step of the
  plain Python kernel: ``<w, J v>`` (complex step) equals ``<J^T w, v>`` (adjoint);
* the tape holds exactly the overwritten values the reverse sweep reads, counted by hand
  below: the recomputed locals add nothing.
"""

import numpy as np
import pytest

import adsrc
import complex_step
import recompute_kernels as K

pytestmark = pytest.mark.usefixtures("backend")   # every test on both backends

N = 7
ITERS = 3


def _rescaled_rows(rng):
    return (rng.uniform(-1, 1, N), rng.uniform(-1, 1, N), 0.7, ITERS)


def _overwritten_after(rng):
    return (rng.uniform(-1, 1, N), rng.uniform(-1, 1, N), 0.7)


def _previous_iterate(rng):
    return (rng.uniform(-1, 1, N), rng.uniform(-1, 1, N), 0.6, ITERS)


def _needed_later_only(rng):
    return (rng.uniform(-1, 1, N), rng.uniform(-1, 1, N), rng.uniform(-1, 1, N), 0.7)


# (kernel, arguments, wrt, outputs, floats the reverse sweep needs recorded)
CASES = {
    # per iteration: the old s, and the old y[i] and x[i] of every row (x and y are read
    # nonlinearly by later iterations); then the last s, saved with the frame at the end of
    # the forward sweep; t = s * x[i] is recomputed
    "rescaled_rows": (K.rescaled_rows, _rescaled_rows, ("x", "y", "w"), ("x", "y"),
                      ITERS * (2 * N + 1) + 1),
    # the old x[i] that the second loop overwrites; t = x[i] * c is recomputed
    "overwritten_after": (K.overwritten_after, _overwritten_after, ("x", "y", "c"), ("x", "y"),
                          N),
    # the previous iterate xold, once per iteration; the row value acc is recomputed
    "previous_iterate": (K.previous_iterate, _previous_iterate, ("x", "b", "omega"), ("x",),
                         ITERS * N),
    # the old x[0], which only the recomputation of t reads; nothing else
    "needed_later_only": (K.needed_later_only, _needed_later_only, ("x", "y", "z"),
                          ("x", "y", "z"), 1),
}


def _copies(args):
    return [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_grads(case):
    kernel, make, wrt, outputs, _ = CASES[case]
    args = make(np.random.default_rng(1))
    adsrc.check_grads(kernel, args, wrt=wrt, outputs=outputs, rtol=1e-7)


@pytest.mark.parametrize("case", sorted(CASES))
def test_dot_product_against_complex_step(case):
    kernel, make, wrt, outputs, _ = CASES[case]
    rng = np.random.default_rng(2)
    args = make(rng)
    f = adsrc.differentiate(kernel, wrt=wrt, outputs=outputs)
    forward, reverse = complex_step.dot_product_test(f, kernel, args, wrt, outputs, rng)
    assert reverse == pytest.approx(forward, rel=1e-12)
    assert abs(forward) > 1e-3          # not a vacuous comparison


@pytest.mark.parametrize("case", sorted(CASES))
def test_recomputed_locals_are_not_recorded(case):
    kernel, make, wrt, outputs, floats = CASES[case]
    args = make(np.random.default_rng(3))
    f = adsrc.differentiate(kernel, wrt=wrt, outputs=outputs)
    f.adjoint(*_copies(args), **{o + "_bar": np.ones(N) for o in outputs})
    assert f.adjoint.last_tape_stats.floats_pushed == floats
