"""Array snapshots (adsrc.analyses.snapshots): a loop that overwrites most of an array the
reverse sweep needs copies it once instead of pushing its old elements one by one.

On both backends, for every kernel of tests/snapshot_kernels.py:

* the gradient passes ``adsrc.check_grads`` (finite differences) and the dot-product test
  against the complex step of the plain kernel (an independent forward method);
* the choice is visible: in the generated code (``push_block``) and in the tape statistics
  (``arrays_copied``), and it is the one the cost rule in the module says, at run time;
* a copy never replaces pushes where it would be wrong (an element written twice, an index
  other than the counter).
"""

import re

import numpy as np
import pytest

import adsrc
import complex_step
import snapshot_kernels as K
from corpus import kernels as corpus
from corpus.hand_adjoints import gauss_seidel_adj
from corpus.problems import perturb_data, poisson2d_csr

pytestmark = pytest.mark.usefixtures("backend")   # every test on both backends

N = 8


def _x(seed=0):
    return np.random.default_rng(seed).uniform(0.5, 1.0, N)


# name -> (kernel, arguments, wrt, outputs, arrays copied, floats pushed)
CASES = {
    # the whole array: one copy of x, nothing pushed element by element
    "prefix_whole": (K.square_prefix, lambda: (_x(), 0.7, 0, N), ("x", "c"), ("x",), 1, N),
    # half of it: still a copy
    "prefix_half": (K.square_prefix, lambda: (_x(), 0.7, 0, N // 2), ("x", "c"), ("x",),
                    1, N),
    # fewer than half: the 3 old elements are pushed
    "prefix_short": (K.square_prefix, lambda: (_x(), 0.7, 2, 5), ("x", "c"), ("x",), 0, 3),
    # a negative start wraps around: pushes, never the copy
    "prefix_negative": (K.square_prefix, lambda: (_x(), 0.7, -3, N - 3), ("x", "c"), ("x",),
                        0, N),
    "backwards": (K.square_backwards, lambda: (_x(), 0.7, 1), ("x", "c"), ("x",), 1, N),
    # every second element, backwards: N / 2 visits of an array of N, a copy
    "backwards_stride": (K.square_backwards, lambda: (_x(), 0.7, 2), ("x", "c"), ("x",),
                         1, N),
    "written_twice": (K.written_twice, lambda: (_x(), 0.7), ("x", "c"), ("x",), 0, 2 * N),
    "shifted_write": (K.shifted_write, lambda: (_x(), 0.7), ("x", "c"), ("x",), 0, N - 1),
    # x copied once; z copied before the inner loops that visit at least half of it
    # (i = 4..7: 4 copies), its old elements pushed in the others (1 + 2 + 3)
    "nested": (K.nested_copies, lambda: (_x(), _x(1), 0.7), ("x", "z", "a"), ("x", "z"),
               5, 5 * N + 6),
    # per sweep, one copy of x and one of y
    "two_arrays": (K.sweeps_with_copy, lambda: (_x(), _x(1), 0.7, 3), ("x", "y", "c"),
                   ("x", "y"), 6, 6 * N),
    # per sweep, the scratch t and then x, each over its whole length: always copied
    "whole_arrays": (K.relax_through_copy, lambda: (_x(), 0.3, 3), ("x", "c"), ("x",),
                     6, 6 * N),
    # the same, the copy into t made by a called kernel, for which t is a parameter
    "callee_copy": (K.copies_through_a_callee, lambda: (_x(), 0.3, 3), ("x", "c"), ("x",),
                    6, 6 * N),
    # x read, then overwritten by a loop that reads none of it: copied (and read in place
    # by the reverse sweep) over the whole array, its 3 old elements pushed over a part
    "overwrite_whole": (K.overwrite_after_use, lambda: (_x(), _x(1), 0.7, 0, N), ("x", "y", "c"),
                        ("x", "y"), 1, N),
    "overwrite_part": (K.overwrite_after_use, lambda: (_x(), _x(1), 0.7, 2, 5), ("x", "y", "c"),
                       ("x", "y"), 0, 3),
    # per sweep, the scratch t over its whole length, read back while it is restored
    "scratch_read_back": (K.squares_through_scratch, lambda: (_x(), 0.3, 3), ("x", "c"),
                          ("x",), 3, 3 * N),
    # one loop, two copies: x's written back, then y's (pushed last) taken in place
    "two_copies_in_place": (K.two_copies_one_read_in_place, lambda: (_x(), _x(1), 0.7),
                            ("x", "y", "c"), ("x", "y"), 2, 2 * N),
    # x copied, and restored element by element: a called kernel's reverse reads x; the
    # value the call returns is pushed per iteration, and the last one kept
    "callee_reads_x": (K.scaled_by_a_callee_reading_x, lambda: (_x(), 0.1 * _x(1)),
                       ("x", "d"), ("x",), 1, 2 * N + 1),
}


def _copies(args):
    return [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]


def _adjoint(case):
    kernel, make, wrt, outputs, _, _ = CASES[case]
    args = make()
    f = adsrc.differentiate(kernel, wrt=wrt, outputs=outputs)
    f.adjoint(*_copies(args), **{o + "_bar": np.ones(N) for o in outputs})
    return f, args


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_grads(case):
    kernel, make, wrt, outputs, _, _ = CASES[case]
    adsrc.check_grads(kernel, make(), wrt=wrt, outputs=outputs, rtol=1e-7)


@pytest.mark.parametrize("case", sorted(CASES))
def test_dot_product_against_complex_step(case):
    kernel, make, wrt, outputs, _, _ = CASES[case]
    f = adsrc.differentiate(kernel, wrt=wrt, outputs=outputs)
    forward, reverse = complex_step.dot_product_test(f, kernel, make(), wrt, outputs,
                                                     np.random.default_rng(5))
    assert reverse == pytest.approx(forward, rel=1e-12)
    assert abs(forward) > 1e-3


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_choice_is_in_the_tape_statistics(case):
    _, _, _, _, copied, floats = CASES[case]
    f, _ = _adjoint(case)
    stats = f.adjoint.last_tape_stats
    assert stats.arrays_copied == copied
    assert stats.floats_pushed == floats


@pytest.mark.parametrize("case, choice, copy", [
    ("prefix_whole", True, True), ("two_arrays", True, True), ("written_twice", False, False),
    # loops over range(a.shape[0]) copy without a choice, and push no element
    ("whole_arrays", False, True)])
def test_the_choice_is_in_the_generated_code(case, choice, copy):
    f, args = _adjoint(case)
    source = f.source("adjoint", args=args)
    # the run-time choice and the copy are generated variables, _keepN and _savedN
    assert bool(re.search(r"\b_keep\d+ = ", source)) == choice
    assert bool(re.search(r"\b_saved\d+ = ", source)) == copy
    # element pushes: where there is no copy, or where the choice may decline it
    pushes = re.search(r"_tape\.push_float\(|push_float\(_tp, ", source)
    assert bool(pushes) == (choice or not copy)


@pytest.mark.parametrize("case, rebound, restored", [
    ("whole_arrays", {"t"}, {"x"}),     # its reverse copy loop reads no t[i]; x's reads x[i]
    ("two_arrays", set(), {"x", "y"}),  # the reverse loops read x[i - 1] and y[i]
    ("callee_copy", set(), {"x", "dst"}),   # a called kernel restores its caller's array
    ("overwrite_part", {"x"}, set()),   # the entry's own parameter: in place when copied
    ("scratch_read_back", set(), {"t"}),    # t[i] = t[i] * t[i] * c + x[i] needs old t[i]
    ("two_copies_in_place", {"y"}, {"x"}),
    ("callee_reads_x", set(), {"x"})])     # sum_of_squares__rev(x, ...) reads x's elements
def test_the_reverse_sweep_reads_a_copy_in_place(case, rebound, restored):
    """After the reverse loop of an array's copy, the array's name refers to the copy
    (``t = _tape.block(_saved0)``) where the reverse loop reads none of its elements and the
    array is not a called kernel's parameter; the other copies are written back element by
    element."""
    f, args = _adjoint(case)
    source = f.source("adjoint", args=args)
    assert set(re.findall(r"\b(\w+) = (?:_tape\.block\(|_blocks\[)", source)) == rebound
    assert set(re.findall(r"\b(\w+)\[\w+\] = (?:_tape\.saved\(|_tp\.blocks\[)",
                          source)) == restored


@pytest.mark.parametrize("kernel, other", [
    (K.relaxed_energy, 0.3),            # the copies of x and t carry tangents
    (K.reweighted_energy, _x(1))])      # the copies of w carry none
def test_hvp_through_arrays_always_copied(kernel, other):
    """Tangent over adjoint through the copies taken without a choice: H v against central
    finite differences of the gradient, and the symmetry <H u, v> = <u, H v>."""
    rng = np.random.default_rng(3)
    x, sweeps = _x(), 3
    u, v = rng.standard_normal(N), rng.standard_normal(N)
    hvp = adsrc.hvp(kernel, wrt="x")
    grad = adsrc.grad(kernel, wrt="x")

    def gradient_at(point):
        return grad(point, *_copies([other]), sweeps)

    h = 1e-5
    fd = (gradient_at(x + h * v) - gradient_at(x - h * v)) / (2 * h)
    hv = hvp(x.copy(), v, *_copies([other]), sweeps)
    np.testing.assert_allclose(hv, fd, rtol=1e-6)
    hu = hvp(x.copy(), u, *_copies([other]), sweeps)
    assert np.dot(hu, v) == pytest.approx(np.dot(u, hv), rel=1e-12)


def test_gauss_seidel_copies_x_once_per_sweep():
    """The issue's example: a Gauss-Seidel sweep rewrites every x[i]; with the matrix values
    active the reverse sweep needs the old x, one copy per sweep, against the hand adjoint."""
    m, sweeps = 6, 4
    rng = np.random.default_rng(11)
    indptr, indices, data = poisson2d_csr(m)
    data = perturb_data(rng, indptr, indices, data)
    n = m * m
    args = (indptr, indices, data, rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), sweeps)
    x_bar = rng.standard_normal(n)
    f = adsrc.differentiate(corpus.gauss_seidel, wrt=("data", "b"), outputs=("x",))
    data_bar, b_bar = f.adjoint(*_copies(args), x_bar=x_bar.copy())
    stats = f.adjoint.last_tape_stats
    assert stats.arrays_copied == sweeps
    assert stats.floats_pushed == n * sweeps
    want = gauss_seidel_adj(*args, x_bar=x_bar)
    np.testing.assert_allclose(data_bar, want["data"], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(b_bar, want["b"], rtol=1e-11, atol=1e-13)
