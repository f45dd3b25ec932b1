"""The Cython backend against the Python reference: same adjoints, same mutated arrays, same
tape counts; the compile cache (reuse, new signatures, two processes building at once); its
argument errors; and its adjoints running in threads.

Every test passes ``backend=`` explicitly, so ``$ADSRC_BACKEND`` does not matter here.  The
session's compiled modules go to the private cache set up in conftest.py.
"""

import array
import inspect
import math
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import threading

import numpy as np
import pytest

import adsrc
from adsrc.compiling import cache as compile_cache
from adsrc.compiling.cache import ENVIRONMENT_VARIABLE, cache_dir, extension_suffix
from adsrc.compiling.cython_build import FLAGS, buffers_ok, compile_flags, runtime_module_name
from adsrc.kernels import gauss_seidel, solvers, spmv
from corpus.hand_adjoints import CASES, CASES_BY_NAME
from corpus.kernels import jacobi2d
from corpus.problems import poisson2d_csr

_CC = (sysconfig.get_config_var("CC") or "cc").split()[0]
# built as users' modules are, with adsrc's own C flags (tests/conftest.py)
pytestmark = [pytest.mark.skipif(not (shutil.which(_CC) or shutil.which("cc")),
                                 reason="the Cython backend needs a C compiler"),
              pytest.mark.shipping_flags]

TESTS = os.path.dirname(os.path.abspath(__file__))
RTOL = 1e-12


def _copy(args):
    return tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args)


def _copy_bars(bars):
    return {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for k, v in bars.items()}


def _close(got, want, what):
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray) and got.shape == want.shape and got.dtype == want.dtype, what
        if np.issubdtype(want.dtype, np.integer):
            np.testing.assert_array_equal(got, want, err_msg=what)
        else:
            scale = float(np.max(np.abs(want))) if want.size else 0.0
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale, err_msg=what)
    else:
        assert isinstance(got, float) == isinstance(want, float), (what, type(got), type(want))
        assert got == pytest.approx(want, rel=RTOL, abs=1e-300), what


def _both(case):
    return {backend: adsrc.differentiate(case.kernel, wrt=case.wrt, outputs=case.outputs,
                                         backend=backend)
            for backend in ("python", "cython")}


CASE_PARAMS = [pytest.param(case, id=case.name) for case in CASES]


def test_this_file_builds_with_adsrcs_own_flags():
    """The rest of the suite builds at -O0 to save time; this file and the corpus build as
    users' modules are (``shipping_flags``, tests/conftest.py), unless ``$ADSRC_CFLAGS`` says
    otherwise."""
    flags = compile_flags()
    assert flags[:len(FLAGS)] == FLAGS and "-O0" not in flags[len(FLAGS):]


# --------------------------------------------------------------------------------------------
# 1. the backends agree
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_backends_agree(case):
    rng = np.random.default_rng(101)
    args = case.make_args(rng, np.int32)
    bars = case.make_bars(rng, args)
    kernels = _both(case)
    assert kernels["cython"].backend == "cython" and kernels["python"].backend == "python"
    got = {}
    for backend, f in kernels.items():
        a, b = _copy(args), _copy_bars(bars)
        grads = f.adjoint(*a, **b)
        got[backend] = grads, a, f.adjoint.last_tape_stats
    (g_py, a_py, s_py), (g_cy, a_cy, s_cy) = got["python"], got["cython"]

    assert isinstance(g_cy, tuple) and len(g_cy) == len(case.wrt)
    for name, g, w in zip(case.wrt, g_cy, g_py):
        _close(g, w, f"{case.name}: {name}_bar, cython vs python")
    for i, (g, w) in enumerate(zip(a_cy, a_py)):
        _close(g, w, f"{case.name}: argument {i} after adjoint(), cython vs python")
    # the two tapes count the same things
    assert (s_cy.floats_pushed, s_cy.ints_pushed) == (s_py.floats_pushed, s_py.ints_pushed), \
        (case.name, s_py, s_cy)

    # the compiled primal leaves the arrays as the original function does, and returns the same
    a_pri, a_orig = _copy(args), _copy(args)
    r_pri = kernels["cython"].primal(*a_pri)
    r_orig = case.kernel(*a_orig)
    for i, (g, w) in enumerate(zip(a_pri, a_orig)):
        _close(g, w, f"{case.name}: argument {i} after the compiled primal")
    if r_orig is None:
        assert r_pri is None, (case.name, r_pri)
    else:
        assert float(r_pri) == pytest.approx(float(r_orig), rel=RTOL), case.name

    # the return value, through value_and_grad, on both backends
    if case.outputs == ("return",):
        values = {backend: adsrc.value_and_grad(case.kernel, wrt=case.wrt, backend=backend)(
            *_copy(args)) for backend in ("python", "cython")}
        (v_py, gr_py), (v_cy, gr_cy) = values["python"], values["cython"]
        assert isinstance(v_cy, float) and v_cy == pytest.approx(v_py, rel=RTOL), case.name
        for name, g, w in zip(case.wrt, gr_cy, gr_py):
            _close(g, w, f"{case.name}: value_and_grad {name}, cython vs python")


@pytest.mark.parametrize("name", ["gauss_seidel", "jacobi2d", "mg_residual"])
def test_primal_returns_none(name):
    """``f.primal`` of a kernel that returns nothing returns None, as the kernel does."""
    case = CASES_BY_NAME[name]
    args = case.make_args(np.random.default_rng(105), np.int32)
    assert case.kernel(*_copy(args)) is None
    for backend, f in _both(case).items():
        result = f.primal(*_copy(args))
        assert result is None, f"{name}: {backend} primal returned {result!r}, not None"


def floor_quotients_and_remainders(a, b, q, r):
    for i in range(a.shape[0]):
        q[i] = a[i] // b[i]
        r[i] = a[i] % b[i]


def test_floats_floor_division_and_remainder_are_pythons():
    """Compiled ``a // b`` and ``a % b`` of floats give Python's values, signs of zeros and
    infinities included: C's fmod gives a remainder the dividend's sign where Python gives the
    divisor's, and floor(a / b) can round up to an integer Python's quotient stays below.  A
    zero divisor, where Python raises, gives NaN."""
    values = [0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 7.25, -7.25, 0.1, 1e300, -1e-300,
              5e-324, np.inf, -np.inf, np.nan]
    pairs = [(x, y) for x in values for y in values if y != 0.0]
    a, b = (np.array(column) for column in zip(*pairs))
    q, r = np.zeros_like(a), np.zeros_like(a)
    primal = adsrc.differentiate(floor_quotients_and_remainders, wrt="a", outputs=("q", "r"),
                                 backend="cython").primal
    primal(a, b, q, r)
    for k, (x, y) in enumerate(pairs):
        for got, want, spelled in ((q[k], x // y, "//"), (r[k], x % y, "%")):
            same = (np.isnan(got) and np.isnan(want)) or \
                (got == want and np.signbit(got) == np.signbit(want))
            assert same, f"{x!r} {spelled} {y!r}: compiled {got!r}, Python {want!r}"
    zero = np.array([1.0, -2.0, 0.0])
    q, r = np.zeros(3), np.zeros(3)
    primal(zero, np.zeros(3), q, r)
    assert np.isnan(q).all() and np.isnan(r).all()


def integer_quotients_and_powers(x, k):
    n = len(x)
    h = 1 / (n - 1)                 # Python's true division of ints: a float
    s = 0.0
    for i in range(1, n):
        s += x[i] * x[i] * (i * h) + x[i] * i ** -2 + x[i] * float(i) ** -1 + (i / k) * x[i]
    return s + x[0] * (1 / 3) + x[0] * k ** 2


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_quotients_and_negative_powers_of_integers_are_floats(backend):
    """``1 / 3``, ``i / k`` and ``i ** -2`` of ints are floats in Python; the compiled code
    once computed them in C integers (0), values and gradients alike.  Against the gradient
    by hand and finite differences."""
    x, k = np.linspace(0.5, 1.5, 6), 4
    i = np.arange(1, 6)
    value = (np.sum(x[1:] ** 2 * i / 5 + x[1:] / i ** 2 + x[1:] / i + i / k * x[1:])
             + x[0] / 3 + x[0] * k ** 2)
    gradient = np.concatenate([[1 / 3 + k ** 2], 2 * x[1:] * i / 5 + 1 / i ** 2 + 1 / i + i / k])
    f = adsrc.differentiate(integer_quotients_and_powers, wrt="x", backend=backend)
    assert f.primal(x.copy(), k) == pytest.approx(value, rel=1e-14)
    np.testing.assert_allclose(f.adjoint(x.copy(), k)[0], gradient, rtol=1e-14)
    adsrc.check_grads(integer_quotients_and_powers, [x, k], "x", backend=backend)


def cells_of(x, y, m):
    for i in range(len(y)):
        y[i] = x[i % m] * x[(i + 1) // m]


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_an_integer_division_by_zero_raises_naming_the_line(backend):
    """As in Python: C's integer division by zero stopped the process (SIGFPE)."""
    f = adsrc.differentiate(cells_of, wrt="x", outputs=("y",), backend=backend)
    x, y = np.linspace(0.5, 1.5, 4), np.ones(4)
    for call in (lambda: f.adjoint(x, y, 0, y_bar=np.ones(4)),
                 lambda: f.tangent(x, y, 0, x_dot=np.ones(4))):
        with pytest.raises(ZeroDivisionError) as raised:
            call()
        assert re.fullmatch(r"adsrc: raised by \S*test_cython_backend.py:\d+, in "
                            r"'y\[i\] = x\[i % m\] \* x\[\(i \+ 1\) // m\]'",
                            raised.value.__notes__[-1])
    np.testing.assert_array_equal(y, np.ones(4))
    assert f.primal(x, y, 2) is None
    np.testing.assert_allclose(y, [x[0] * x[0], x[1] * x[1], x[0] * x[1], x[1] * x[2]],
                               rtol=1e-15)


def scaled_then_shifted(A):
    A[:, :] = A * 2.0
    A[1:, :] = A[:-1, :] * A[-1:, :]
    return np.sum(A * A)


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_a_failed_check_names_its_own_line_in_every_mode(backend):
    """The extent check of the second statement (A[-1:, :] is not stretched along rows) failed
    in tangent mode with a note naming the statement before it: the tangent code quoted the
    user's line above differentiated statements only, not above the checks."""
    f = adsrc.differentiate(scaled_then_shifted, wrt="A", backend=backend)
    for call in (lambda A: f.adjoint(A), lambda A: f.tangent(A, A_dot=np.ones((3, 4)))):
        with pytest.raises(AssertionError, match="operands of different shapes") as raised:
            call(np.ones((3, 4)))
        assert raised.value.__notes__[-1].endswith(r"in 'A[1:, :] = A[:-1, :] * A[-1:, :]'")


def truncated_times(x):
    k = int(x[0])
    return k * x[1] + x[0]


def floored_times(x):
    k = math.floor(x[0])
    return k * x[1] + x[0]


def ceiled_times(x):
    return math.ceil(x[0]) * x[1] + x[0]


def int_of_np_floor_times(x):
    return int(np.floor(x[0])) * x[1] + x[0]


def int_of_floor_division_times(x):
    return int(x[0] // 1.0) * x[1] + x[0]


def _raised_by(kernel, x):
    try:
        kernel(x)
    except (ValueError, OverflowError) as error:
        return type(error)
    raise AssertionError(f"{kernel.__name__}({x}) raised nothing")


@pytest.mark.parametrize("backend", ["python", "cython"])
@pytest.mark.parametrize("kernel", [truncated_times, floored_times, ceiled_times,
                                    int_of_np_floor_times, int_of_floor_division_times])
def test_int_of_a_float_no_integer_holds_raises(kernel, backend):
    """C's conversion of a NaN, an infinity or a float past 2**63 is undefined: compiled code
    gave -2**63, a value, and an index far outside any array.  It raises what Python raises
    (a NaN's ValueError, an infinity's OverflowError), also where the float is rounded first
    (math.floor and math.ceil are spelled int(np.floor(x)), which compiled code converted
    unchecked)."""
    grad = adsrc.value_and_grad(kernel, wrt="x", backend=backend)
    for bad in (float("nan"), float("inf"), -float("inf")):
        x = np.array([bad, 2.0])
        with pytest.raises(_raised_by(kernel, x.copy())):
            grad(x)
    for good in (-3.75, 3.25, 5.0):        # k * 2.0 + good is exact
        x = np.array([good, 2.0])
        value, gradient = grad(x.copy())
        assert value == kernel(x)
        np.testing.assert_array_equal(gradient, [1.0, (kernel(x) - good) / x[1]])
        if good % 1.0 != 0.0:       # finite differences step over the jump at an integer
            adsrc.check_grads(kernel, [x], "x", backend=backend)
    if backend == "cython":
        with pytest.raises(OverflowError, match="64 bits"):
            grad(np.array([1e19, 2.0]))


def python_extrema(x):
    return max(x[0], x[1]) + 2.0 * min(x[0], x[1]) + max(x[2], x[0])


def numpy_extrema(x, y):
    y[:] = np.maximum(x[:3], x[3:]) + 2.0 * np.minimum(x[:3], x[3:]) + np.max(x) * np.min(x)


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_a_nan_is_taken_or_passed_over_as_python_and_numpy_do(backend):
    """Python's max(a, b) is a unless b > a, so a NaN b is passed over, and its derivative
    went to the NaN b (the test was a >= b); NumPy's maximum, max and their min are NaN when
    an element is, where adsrc gave the extremum of the others.  Values against Python and
    NumPy, derivatives against finite differences."""
    nan = float("nan")
    x = np.array([1.5, nan, 0.5])
    value, gradient = adsrc.value_and_grad(python_extrema, wrt="x", backend=backend)(x.copy())
    assert value == python_extrema(x) == 1.5 + 3.0 + 1.5
    steps = [(python_extrema(x + h) - python_extrema(x - h)) / 2e-6
             for h in np.eye(3)[[0, 2]] * 1e-6]
    np.testing.assert_allclose(gradient[[0, 2]], steps, rtol=1e-8)
    assert gradient[1] == 0.0
    f = adsrc.differentiate(numpy_extrema, wrt="x", outputs="y", backend=backend)
    for x in (np.array([1.0, nan, 0.0, nan, 1.0, 0.0]), np.array([1.0, 2.0, 0.5, 0.7, 1.5, 0.4])):
        y, expected = np.zeros(3), np.zeros(3)
        numpy_extrema(x, expected)
        f.primal(x.copy(), y)
        np.testing.assert_array_equal(y, expected)
    adsrc.check_grads(numpy_extrema, [x, np.zeros(3)], "x", "y", backend=backend)


def powers(x, p):
    return x[0] ** p[0] + np.power(x[1], p[1]) * 2.0


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_a_power_of_a_negative_base_has_no_derivative_in_its_exponent(backend):
    """(-2.0) ** 2.0 is 4.0, its derivative in the base -4.0; in the exponent, where the power
    has no real value on either side of 2.0, NaN (C's log of a negative number, and JAX's).
    The Python backend raised ValueError (math.log's domain error) for a kernel Python runs.
    The derivatives in the base against finite differences; elsewhere both against them."""
    x, p = np.array([-2.0, -1.5]), np.array([2.0, 3.0])
    f = adsrc.differentiate(powers, wrt=("x", "p"), backend=backend)
    value, (x_bar, p_bar) = adsrc.value_and_grad(powers, wrt=("x", "p"), backend=backend)(x, p)
    assert value == powers(x, p) == 4.0 - 6.75
    np.testing.assert_allclose(x_bar, [2.0 * -2.0, 2.0 * 3.0 * 2.25], rtol=1e-15)
    assert np.isnan(p_bar).all()
    assert np.isnan(f.tangent(x, p, p_dot=np.array([1.0, 0.0]))[0])
    adsrc.check_grads(powers, [x, p], "x", backend=backend)
    adsrc.check_grads(powers, [np.array([2.0, 1.5]), np.array([0.7, 3.0])], ("x", "p"),
                      backend=backend)


def extrema_of_arrays(x, B, w):
    return np.max(x) + 2.0 * np.min(x) + np.dot(np.max(B, axis=0), w)


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_the_extremum_of_equal_infinities_is_the_first_of_them(backend):
    """np.max of elements that are all -inf (np.min: +inf) compared each with its start, -inf,
    so none was taken and the gradient was 0.  The first element is taken, as NumPy's argmax
    and argmin point to, and as in a tie of finite elements; the hand gradient built from
    argmax and argmin is the reference, and finite differences away from ties."""
    def by_hand(x, B):
        gx, gB = np.zeros_like(x), np.zeros_like(B)
        gx[np.argmax(x)] += 1.0
        gx[np.argmin(x)] += 2.0
        gB[np.argmax(B, axis=0), [0, 1]] = [1.0, 3.0]
        return gx, gB

    inf, w = math.inf, np.array([1.0, 3.0])
    grad = adsrc.grad(extrema_of_arrays, wrt=("x", "B"), backend=backend)
    for x, B in ((np.full(3, -inf), np.full((3, 2), -inf)),
                 (np.array([inf, inf, 1.0]), np.array([[-inf, 2.0], [-inf, 2.0], [-inf, 1.0]])),
                 (np.array([1.0, -inf, -inf]), np.array([[2.0, -inf], [2.0, -inf], [1.0, 5.0]]))):
        with np.errstate(invalid="ignore"):       # the value inf - inf of the second
            gradients = grad(x.copy(), B.copy(), w)
        for got, want in zip(gradients, by_hand(x, B)):
            np.testing.assert_array_equal(got, want)
    adsrc.check_grads(extrema_of_arrays, [np.array([0.3, -1.0, 2.0]),
                                          np.array([[1.0, 4.0], [2.0, -1.0], [0.5, 3.0]]), w],
                      ("x", "B"), backend=backend)


def absolute_values(x):
    return abs(x[0]) + np.sum(np.abs(x[1:]))


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_the_derivative_of_abs_at_a_nan_is_a_nan(backend):
    """It was -1 (the sign test 'x >= 0' fails for a NaN), a number where the value is NaN;
    JAX and PyTorch give NaN.  Elsewhere the sign, against finite differences."""
    x = np.array([float("nan"), 1.5, -2.0])
    value, gradient = adsrc.value_and_grad(absolute_values, wrt="x", backend=backend)(x.copy())
    assert np.isnan(value) and np.isnan(gradient[0])
    np.testing.assert_array_equal(gradient[1:], [1.0, -1.0])
    f = adsrc.differentiate(absolute_values, wrt="x", backend=backend)
    assert np.isnan(f.tangent(x.copy(), x_dot=np.array([1.0, 0.0, 0.0]))[0])
    adsrc.check_grads(absolute_values, [np.array([0.5, 1.5, -2.0])], "x", backend=backend)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_peak_bytes_agree(case):
    """``peak_bytes`` too: both tapes hold the same values at their peak."""
    rng = np.random.default_rng(102)
    args = case.make_args(rng, np.int32)
    bars = case.make_bars(rng, args)
    stats = {}
    for backend, f in _both(case).items():
        f.adjoint(*_copy(args), **_copy_bars(bars))
        stats[backend] = f.adjoint.last_tape_stats
    held = stats["python"].floats_pushed + stats["python"].ints_pushed
    assert stats["python"].peak_bytes == stats["cython"].peak_bytes, (case.name, stats)
    if held:        # a tape that was pushed to held something at its peak
        assert stats["python"].peak_bytes > 0, (case.name, stats["python"])


def scale_positive(x, y):
    """A kernel whose tape holds values but no frame (no local a reverse sweep reads)."""
    for i in range(len(x)):
        if y[i] > 0.0:
            y[i] = y[i] * x[i]


def test_peak_bytes_without_a_frame():
    stats = {}
    for backend in ("python", "cython"):
        f = adsrc.differentiate(scale_positive, wrt=("x", "y"), outputs=("y",), backend=backend)
        x, y = np.linspace(-1.0, 1.0, 6), np.linspace(-1.0, 2.0, 6)
        f.adjoint(x, y, y_bar=np.ones(6))
        stats[backend] = f.adjoint.last_tape_stats
    py, cy = stats["python"], stats["cython"]
    assert (py.floats_pushed, py.ints_pushed) == (cy.floats_pushed, cy.ints_pushed), stats
    held = py.floats_pushed + py.ints_pushed
    assert held >= 6, py        # (at least the branch directions; how much depends on the
    #                             recording strategy: old elements pushed, or an array copy)
    # everything is pushed before anything is popped: the peak is all of it
    assert cy.peak_bytes == 8 * held, cy
    assert py.peak_bytes == 8 * held, py


def scale_by_an_entry(idx, x, y):
    """A kernel whose frame holds an index read from an int32 array (a NumPy integer in
    Python, a C integer in the compiled code)."""
    j = idx[0]
    for i in range(len(x)):
        y[i] = y[i] * x[j]
    j = idx[1]
    for i in range(len(x)):
        y[i] = y[i] * x[j]


def test_frame_scalars_from_index_arrays_count_the_same():
    stats, grads = {}, {}
    for backend in ("python", "cython"):
        f = adsrc.differentiate(scale_by_an_entry, wrt=("x",), outputs=("y",), backend=backend)
        idx, x, y = np.array([1, 2], np.int32), np.linspace(1.0, 2.0, 4), np.linspace(-1, 1, 4)
        grads[backend] = f.adjoint(idx, x, y, y_bar=np.ones(4))
        stats[backend] = f.adjoint.last_tape_stats
    assert stats["python"] == stats["cython"], stats
    _close(grads["cython"][0], grads["python"][0], "x_bar")


def root_sum(x):
    return np.sqrt(x[0]) + x[1]


def test_the_drivers_run_a_differentiated_kernel_on_its_backend():
    """grad, jacobian, hvp... of an adsrc.differentiate object use its backend unless told
    otherwise (they took the default backend): the Python backend raises where compiled code
    gives NaN, sqrt of a negative number."""
    f = adsrc.differentiate(root_sum, wrt="x", backend="python")
    x = np.array([-1.0, 2.0])
    for run in (lambda: adsrc.grad(f, wrt="x")(x), lambda: adsrc.value_and_grad(f, wrt="x")(x),
                lambda: adsrc.jacobian(f, wrt="x")(x),
                lambda: adsrc.hvp(f, wrt="x")(x, np.ones(2)),
                lambda: adsrc.hessian_operator(f, x, wrt="x").matvec(np.ones(2))):
        with pytest.raises(ValueError, match="math domain error"):
            run()
    assert np.isnan(adsrc.grad(f, wrt="x", backend="cython")(x)[0])
    assert np.isnan(adsrc.grad(root_sum, wrt="x", backend="cython")(x)[0])


def test_grad_and_check_grads_take_a_backend():
    case = CASES_BY_NAME["residual_loss"]
    args = case.make_args(np.random.default_rng(103), np.int32)
    want = adsrc.grad(case.kernel, wrt=case.wrt, backend="python")(*_copy(args))
    got = adsrc.grad(case.kernel, wrt=case.wrt, backend="cython")(*_copy(args))
    for name, g, w in zip(case.wrt, got, want):
        _close(g, w, f"grad {name}")
    assert adsrc.check_grads(case.kernel, args, wrt=case.wrt, backend="cython") is not None


def test_source_in_either_language():
    case = CASES_BY_NAME["gauss_seidel"]
    args = case.make_args(np.random.default_rng(104), np.int32)
    f = adsrc.differentiate(case.kernel, wrt=case.wrt, outputs=case.outputs, backend="python")
    cy = f.source("adjoint", args=args, backend="cython")
    py = f.source("adjoint", args=args, backend="python")
    assert "cdef " in cy and "gauss_seidel__primal" in cy and "with nogil:" in cy
    assert "cdef " not in py and "def gauss_seidel__rev(" in py
    assert f.source("adjoint", args=args) == py           # this object's backend


def _function_text(source, header):
    """The lines of the generated function whose first line starts with ``header``."""
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    end = next((i for i in range(start + 1, len(lines))
                if lines[i] and not lines[i][0].isspace()), len(lines))
    return "\n".join(lines[start:end])


@pytest.mark.parametrize("kernel", [solvers.jacobi_damped, solvers.gauss_seidel],
                         ids=["jacobi_damped", "gauss_seidel"])
def test_the_forward_sweep_and_the_compiled_primal_quote_every_statement(kernel):
    """Each statement of the kernel, a loop's header included, is quoted above its code in the
    forward sweep (both backends) and in the Cython module's primal, in the kernel's order, as
    in the reverse sweep: the code reads beside the kernel, and errors are traced back to its
    lines."""
    lines, first = inspect.getsourcelines(kernel)
    docstring_end = next(i for i, line in enumerate(lines) if i > 1 and '"""' in line)
    statements = {first + i: line.strip() for i, line in enumerate(lines)
                  if i > docstring_end and line.strip() not in ("", "else:")}
    f = adsrc.differentiate(kernel, wrt=("data", "b"), outputs=("x",))
    csr, vector = poisson2d_csr(4, np.int32), np.ones(16)
    args = (*csr, vector, vector, vector, 0.5, 2) if kernel is solvers.jacobi_damped \
        else (*csr, vector, vector, 2)
    name = kernel.__name__
    functions = [_function_text(f.source("adjoint", args=args, backend="python"),
                                f"def {name}__fwd("),
                 _function_text(f.source("adjoint", args=args, backend="cython"),
                                f"cdef int {name}__fwd_c("),
                 _function_text(f.source("adjoint", args=args, backend="cython"),
                                f"cdef int {name}__primal_c(")]
    for text in functions:
        quoted = re.findall(r"# line (\d+): (.*)$", text, flags=re.M)
        assert {int(number): statement for number, statement in quoted} == statements
        numbers = [int(number) for number, _ in quoted]
        assert numbers == sorted(numbers), "the forward sweep and the primal keep the order"


def test_backend_environment_variable(monkeypatch):
    monkeypatch.setenv("ADSRC_BACKEND", "python")
    assert adsrc.differentiate(spmv, wrt="x", outputs="y").backend == "python"
    monkeypatch.setenv("ADSRC_BACKEND", "cython")
    assert adsrc.differentiate(spmv, wrt="x", outputs="y").backend == "cython"
    assert adsrc.differentiate(spmv, wrt="x", outputs="y", backend="python").backend == "python"
    monkeypatch.setenv("ADSRC_BACKEND", "fortran")
    with pytest.raises(adsrc.AdsrcError):
        adsrc.differentiate(spmv, wrt="x", outputs="y")


# --------------------------------------------------------------------------------------------
# 2. the compile cache
# --------------------------------------------------------------------------------------------

_SUFFIX = extension_suffix()


def _module_files(directory, kernel):
    pattern = re.compile(rf"adsrc_{re.escape(kernel)}_[0-9a-f]{{20}}{re.escape(_SUFFIX)}$")
    return {name for name in os.listdir(directory) if pattern.match(name)}


def _all_modules(directory):
    """Every compiled module in the cache, with what identifies the file on disk."""
    out = {}
    for name in os.listdir(directory):
        if name.endswith(_SUFFIX):
            st = os.stat(os.path.join(directory, name))
            out[name] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def _spmv_problem(int_dtype):
    indptr, indices, data = poisson2d_csr(3, int_dtype)
    n = len(indptr) - 1
    rng = np.random.default_rng(7)
    return indptr, indices, data, rng.uniform(-1, 1, n), np.zeros(n)


def _spmv_x_bar(f, problem, y_bar):
    (x_bar,) = f.adjoint(*_copy(problem), y_bar=y_bar.copy())
    return x_bar


_FRESH_PROCESS = textwrap.dedent("""
    import sys
    import numpy as np
    import adsrc
    from adsrc.kernels import spmv
    from corpus.problems import poisson2d_csr
    indptr, indices, data = poisson2d_csr(3, np.int32)
    n = len(indptr) - 1
    x = np.random.default_rng(7).uniform(-1, 1, n)
    f = adsrc.differentiate(spmv, wrt=("x",), outputs=("y",), backend="cython")
    (x_bar,) = f.adjoint(indptr, indices, data, x, np.zeros(n), y_bar=np.arange(n, dtype=float))
    print(repr(x_bar.tolist()))
""")


def _subprocess_env(cache):
    env = dict(os.environ)
    env[ENVIRONMENT_VARIABLE] = str(cache)
    env["PYTHONPATH"] = os.pathsep.join([TESTS] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def test_cache_reuses_modules_and_builds_new_signatures():
    directory = cache_dir()
    problem = _spmv_problem(np.int32)
    y_bar = np.arange(len(problem[4]), dtype=float)
    first = adsrc.differentiate(spmv, wrt=("x",), outputs=("y",), backend="cython")
    want = _spmv_x_bar(first, problem, y_bar)
    assert len(_module_files(directory, "spmv")) >= 1
    before = _all_modules(directory)

    # a fresh object, the same signature: nothing new is built, and it works
    again = adsrc.differentiate(spmv, wrt=("x",), outputs=("y",), backend="cython")
    np.testing.assert_array_equal(_spmv_x_bar(again, problem, y_bar), want)
    assert _all_modules(directory) == before

    # a fresh process, the same signature: loaded from disk, not rebuilt (no file replaced)
    result = subprocess.run([sys.executable, "-c", _FRESH_PROCESS], capture_output=True,
                            text=True, env=_subprocess_env(directory), timeout=120)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.array(eval(result.stdout)), want)
    assert _all_modules(directory) == before

    # int64 indices: a new signature, a new module
    wide = _spmv_problem(np.int64)
    newer = adsrc.differentiate(spmv, wrt=("x",), outputs=("y",), backend="cython")
    np.testing.assert_allclose(_spmv_x_bar(newer, wide, y_bar), want, rtol=RTOL)
    after = _all_modules(directory)
    added = set(after) - set(before)
    assert len(added) == 1 and _module_files(directory, "spmv") & added, added
    assert {name: after[name] for name in before} == before     # nothing rebuilt


def test_generated_modules_cimport_one_runtime_module():
    """The tape's class and stacks are compiled once per cache, into the runtime module, not
    into every module."""
    problem = _spmv_problem(np.int32)
    f = adsrc.differentiate(spmv, wrt=("x",), outputs=("y",), backend="cython")
    g = adsrc.differentiate(gauss_seidel, wrt=("b",), outputs=("x",), backend="cython")
    _spmv_x_bar(f, problem, np.ones(9))
    indptr, indices, data = poisson2d_csr(3, np.int32)
    g.adjoint(indptr, indices, data, np.zeros(9), np.ones(9), 2, x_bar=np.ones(9))
    for kernel in (f, g):
        source = kernel.source("adjoint")
        assert f"from {runtime_module_name()} cimport Tape, TapeData, push_float" in source
        assert "cdef class Tape" not in source and "cdef struct TapeData" not in source
    runtimes = [name for name in os.listdir(cache_dir()) if name.startswith("_adsrc_runtime_")]
    assert runtimes == [runtime_module_name() + _SUFFIX]


def _buffers_ok(*arrays, written=(), companions=None):
    """buffers_ok on ``arrays``: the ones at ``written`` are written (and must be writable),
    ``companions`` maps an index to the index of its primal (float64, same shape, writable)."""
    companions = companions or {}
    writable = tuple(i in written or i in companions for i in range(len(arrays)))
    return buffers_ok()(arrays, writable, tuple(i in written for i in range(len(arrays))),
                        tuple(companions.get(i, -1) for i in range(len(arrays))), np.ndarray)


def test_the_compiled_call_check_of_buffers():
    """What the one-pass check of a compiled call's arrays accepts, case by case; on False a
    call takes the checks in Python, which name the fault (test_errors, on both backends)."""
    x, b, idx = np.zeros(6), np.ones(6), np.arange(6, dtype=np.int32)
    assert _buffers_ok(idx, x, b, np.zeros(6), written=(1, 3), companions={3: 1})
    assert _buffers_ok(np.zeros((2, 3)), np.ones((2, 3)), written=(1,), companions={1: 0})
    assert not _buffers_ok(x[::2], b[:3])                       # not C-contiguous
    read_only = np.ones(6)
    read_only.flags.writeable = False
    assert _buffers_ok(read_only, x, written=(1,))              # read, not written: fine
    assert not _buffers_ok(x, read_only, written=(1,))
    for bad in (np.zeros(6, dtype=np.float32), np.zeros(5), np.zeros((6, 1)), np.zeros((3, 2))):
        assert not _buffers_ok(x, bad, written=(1,), companions={1: 0})
    assert not _buffers_ok(np.zeros((2, 3)), np.zeros((3, 2)), written=(1,), companions={1: 0})
    assert not _buffers_ok(x, array.array("d", [0.0] * 6), written=(1,), companions={1: 0})
    whole = np.zeros(12)
    assert not _buffers_ok(whole[:6], whole[4:10], written=(0,))   # overlapping views
    assert not _buffers_ok(whole[:6], whole[4:10], written=(1,))
    assert _buffers_ok(whole[:6], whole[6:], written=(0, 1))        # disjoint views
    assert _buffers_ok(b, b)                                        # one array read twice
    assert not _buffers_ok(b, b, written=(0,))
    assert _buffers_ok(whole, whole[3:3], written=(0,))             # no elements: no overlap


def test_the_compiled_call_check_passes_what_the_python_checks_pass():
    """Random adjoint calls of SpMV whose arrays are drawn from fresh arrays, views of one
    buffer (overlapping or not), strided views, read-only arrays, float32 arrays and arrays of
    the wrong length: the check in C passes exactly the calls the checks in Python pass, with
    the same arrays (so it never lets a bad call through, and the fast route is the one taken)."""
    f = adsrc.differentiate(spmv, wrt=("data", "x"), outputs=("y",), backend="cython")
    indptr, indices, data, x, y = _spmv_problem(np.int32)
    f.adjoint(indptr, indices, data, x.copy(), y.copy(), y_bar=np.ones(9))
    (compiled,) = f._compiled.values()
    checks = compiled.checks["_bar"]
    rng = np.random.default_rng(11)
    passed = refused = 0
    for _ in range(400):
        base = np.zeros(64)

        def draw(size):
            kind = rng.integers(10)
            if kind == 0:
                offset = int(rng.integers(0, 64 - size))
                return base[offset:offset + size]                    # maybe overlapping
            if kind == 1:
                return np.zeros(2 * size)[::2]                       # strided
            if kind == 2:
                frozen = np.zeros(size)
                frozen.flags.writeable = False
                return frozen
            if kind == 3:
                return np.zeros(size, dtype=np.float32)
            if kind == 4:
                return np.zeros(size + 1)
            return np.zeros(size)                                    # fresh and right
        x_arg, y_arg = draw(9), draw(9)
        if x_arg.dtype != np.float64 or len(x_arg) != 9 or len(y_arg) != 9 \
                or y_arg.dtype != np.float64:
            continue                                     # refused by the signature, before
        bars = {"y_bar": draw(9), "x_bar": draw(9), "data_bar": draw(len(data))}
        args = (indptr, indices, data, x_arg, y_arg)
        fast = checks._checked_in_c(args, dict(bars))
        try:
            slow = checks._checked_in_python(args, dict(bars))
        except adsrc.ArgumentError:
            slow = None
        assert (fast is None) == (slow is None), (x_arg, y_arg, bars)
        if fast is None:
            refused += 1
            continue
        passed += 1
        assert fast[0].keys() == slow[0].keys()
        assert all(a is b for a, b in zip(fast[0].values(), slow[0].values()))
        assert all(a is b for a, b in zip(fast[1], slow[1]))
    assert passed > 10 and refused > 10


def test_a_corrupt_runtime_module_is_rebuilt(tmp_path):
    problem = _spmv_problem(np.int32)
    want = _spmv_x_bar(adsrc.differentiate(spmv, wrt=("x",), outputs=("y",), backend="python"),
                       problem, np.arange(9, dtype=float))
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in os.listdir(cache_dir()):
        if name.startswith("_adsrc_cyutility_"):
            shutil.copy2(os.path.join(cache_dir(), name), cache / name)
    runtime = cache / (runtime_module_name() + _SUFFIX)
    runtime.write_bytes(b"not a shared library")
    result = subprocess.run([sys.executable, "-c", _FRESH_PROCESS], capture_output=True,
                            text=True, env=_subprocess_env(cache), timeout=300)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.array(eval(result.stdout)), want, rtol=RTOL)
    assert runtime.read_bytes() != b"not a shared library"


_RACER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import adsrc
    from adsrc.compiling import cython_build
    from adsrc.kernels import gauss_seidel
    from corpus.problems import poisson2d_csr
    go = sys.argv[1]
    built = []                 # the modules this process compiles
    build = cython_build._build
    def counted(directory, extensions, shared, **options):
        built.extend(extension.name for extension in extensions)
        return build(directory, extensions, shared, **options)
    cython_build._build = counted
    indptr, indices, data = poisson2d_csr(4, np.int32)
    n = len(indptr) - 1
    f = adsrc.differentiate(gauss_seidel, wrt=("b",), outputs=("x",), backend="cython")
    print("ready", flush=True)
    deadline = time.time() + 60
    while not os.path.exists(go) and time.time() < deadline:
        time.sleep(0.001)
    x = np.zeros(n)
    b = np.linspace(-1.0, 1.0, n)
    (b_bar,) = f.adjoint(indptr, indices, data, x, b, 2, x_bar=np.ones(n))
    print(repr(b_bar.tolist()))
    print(repr(x.tolist()))
    print(repr(built))
""")


def test_two_processes_wanting_the_same_modules_build_each_once(tmp_path):
    # start from the shared Cython utility module of this session (building it is not what this
    # test is about, and it takes long); everything else is new to the directory, the tape
    # module too, which both processes need first
    adsrc.differentiate(spmv, wrt=("x",), outputs=("y",), backend="cython").adjoint(
        *_copy(_spmv_problem(np.int32)), y_bar=np.ones(9))
    cache = tmp_path / "cache"
    cache.mkdir()
    # the file this process imported it from: the session's cache, or a private_cache test's
    # copy (then the session's cache never gets one)
    (path,) = [module.__file__ for name, module in list(sys.modules.items())
               if name.startswith("_adsrc_cyutility_")]
    shared = [os.path.basename(path)]
    shutil.copy2(path, cache / shared[0])

    go = tmp_path / "go"
    env = _subprocess_env(cache)
    racers = [subprocess.Popen([sys.executable, "-c", _RACER, str(go)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    try:
        for racer in racers:       # both imported adsrc and analysed the kernel: start together
            assert racer.stdout.readline().strip() == "ready", racer.stderr.read()
        go.touch()
        outputs = [racer.communicate(timeout=180) for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
    for racer, (out, err) in zip(racers, outputs):
        assert racer.returncode == 0, err

    # the reference, in this process, with the Python backend
    indptr, indices, data = poisson2d_csr(4, np.int32)
    n = len(indptr) - 1
    x, b = np.zeros(n), np.linspace(-1.0, 1.0, n)
    f = adsrc.differentiate(gauss_seidel, wrt=("b",), outputs=("x",), backend="python")
    (b_bar,) = f.adjoint(indptr, indices, data, x, b, 2, x_bar=np.ones(n))
    built = []
    for out, _ in outputs:
        got_b_bar, got_x, racer_built = (eval(line) for line in out.splitlines())
        np.testing.assert_allclose(np.array(got_b_bar), b_bar, rtol=RTOL)
        np.testing.assert_allclose(np.array(got_x), x, rtol=RTOL)
        built += racer_built

    files = sorted(os.listdir(cache))
    modules = _module_files(cache, "gauss_seidel")
    assert len(modules) == 1, files
    (module,) = modules
    pyx = module[: -len(_SUFFIX)] + ".pyx"
    # exactly the module, its .pyx, the shared utility module, the runtime module and the
    # module's one source-key record (both racers wrote it, by atomic rename): no build dirs,
    # no temp files
    runtime = runtime_module_name() + _SUFFIX
    assert set(files) == {module, pyx, *shared, runtime, "keys", "locks"}, files
    records = os.listdir(cache / "keys")
    assert len(records) == 1 and records[0].endswith(".pickle"), records
    # one racer built each module while the other waited on the cache's lock, then imported it
    kernel_module = module[: -len(_SUFFIX)]
    assert sorted(built) == sorted([runtime_module_name(), kernel_module]), built
    assert sorted(os.listdir(cache / "locks")) == sorted(
        [runtime_module_name() + ".lock", kernel_module + ".lock"])



def test_without_flock_a_build_runs_unlocked(tmp_path, monkeypatch):
    """Where fcntl is missing (Windows), the build lock lets the build run, as before the lock,
    and leaves no lock file."""
    monkeypatch.setattr(compile_cache, "fcntl", None)
    ran = []
    with compile_cache.build_lock(str(tmp_path), "module"):
        ran.append(True)
    assert ran == [True]
    assert not os.path.exists(tmp_path / compile_cache.LOCKS)


# --------------------------------------------------------------------------------------------
# 3. errors
# --------------------------------------------------------------------------------------------


def _gs_problem(m=4, sweeps=3, seed=5):
    indptr, indices, data = poisson2d_csr(m, np.int32)
    n = len(indptr) - 1
    rng = np.random.default_rng(seed)
    return indptr, indices, data, rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), sweeps


def _strided(array):
    """A non-contiguous view with the values of ``array``."""
    base = np.zeros((2,) + array.shape[:-1] + (2 * array.shape[-1],))
    view = base[0, ..., ::2]
    view[...] = array
    assert not view.flags.c_contiguous
    return view


def _gs_reference(problem, x_bar):
    f = adsrc.differentiate(gauss_seidel, wrt=("data", "x", "b"), outputs=("x",),
                            backend="python")
    a = _copy(problem)
    grads = f.adjoint(*a, x_bar=x_bar.copy())
    return grads, a[3]


def test_non_contiguous_arrays_cython_refuses_python_accepts():
    problem = _gs_problem()
    n = len(problem[4])
    x_bar = np.linspace(0.5, 1.5, n)
    (want_data, want_x, want_b), want_final = _gs_reference(problem, x_bar)

    for position in (2, 3, 4):          # data, x, b
        args = list(_copy(problem))
        args[position] = _strided(args[position])
        snapshot = _copy(args)
        cy = adsrc.differentiate(gauss_seidel, wrt=("data", "x", "b"), outputs=("x",),
                                 backend="cython")
        bar = x_bar.copy()
        with pytest.raises(adsrc.ArgumentError, match="contiguous"):
            cy.adjoint(*args, x_bar=bar)
        with pytest.raises(adsrc.ArgumentError, match="contiguous"):
            cy.primal(*args)
        for got, was in zip(args, snapshot):
            if isinstance(was, np.ndarray):
                np.testing.assert_array_equal(got, was)
        np.testing.assert_array_equal(bar, x_bar)

        py = adsrc.differentiate(gauss_seidel, wrt=("data", "x", "b"), outputs=("x",),
                                 backend="python")
        bar = x_bar.copy()
        g_data, g_x, g_b = py.adjoint(*args, x_bar=bar)
        _close(g_data, want_data, "data_bar")
        _close(g_x, want_x, "x_bar")
        _close(g_b, want_b, "b_bar")
        _close(np.ascontiguousarray(args[3]), want_final, "x after adjoint")


def test_fortran_ordered_2d_array():
    case = CASES_BY_NAME["jacobi2d"]
    rng = np.random.default_rng(9)
    args = case.make_args(rng, np.int32)
    bars = case.make_bars(rng, args)
    want = case.hand(args, bars)
    u_f = np.asfortranarray(args[0])
    assert not u_f.flags.c_contiguous
    fargs = (u_f,) + _copy(args[1:])
    snapshot = _copy(fargs)
    cy = adsrc.differentiate(jacobi2d, wrt=case.wrt, outputs=case.outputs, backend="cython")
    u_bar = bars["u_bar"].copy()
    with pytest.raises(adsrc.ArgumentError):
        cy.adjoint(*fargs, u_bar=u_bar)
    for got, was in zip(fargs, snapshot):
        if isinstance(was, np.ndarray):
            np.testing.assert_array_equal(got, was)
    np.testing.assert_array_equal(u_bar, bars["u_bar"])

    py = adsrc.differentiate(jacobi2d, wrt=case.wrt, outputs=case.outputs, backend="python")
    got = py.adjoint(*fargs, u_bar=np.asfortranarray(bars["u_bar"]))
    for name, g, w in zip(case.wrt, got, want):
        if isinstance(w, np.ndarray):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12, err_msg=name)
        else:
            assert g == pytest.approx(w, rel=1e-10), name


def test_non_contiguous_bar():
    """A non-contiguous ``*_bar`` is a bad argument for the compiled backend too: an
    ArgumentError before anything runs, the user's arrays unchanged."""
    problem = _gs_problem()
    n = len(problem[4])
    x_bar = np.linspace(0.5, 1.5, n)
    (want_data, want_x, want_b), _ = _gs_reference(problem, x_bar)

    for strided_bar in ("x_bar", "data_bar"):
        args = _copy(problem)
        snapshot = _copy(args)
        bars = {"x_bar": x_bar.copy(), "data_bar": np.zeros_like(problem[2])}
        bars[strided_bar] = _strided(bars[strided_bar])
        before = _copy_bars(bars)
        cy = adsrc.differentiate(gauss_seidel, wrt=("data", "x", "b"), outputs=("x",),
                                 backend="cython")
        with pytest.raises(adsrc.ArgumentError):
            cy.adjoint(*args, **bars)
        for got, was in zip(args, snapshot):
            if isinstance(was, np.ndarray):
                np.testing.assert_array_equal(got, was, err_msg=f"{strided_bar}: user array changed")
        for key in bars:
            np.testing.assert_array_equal(bars[key], before[key])

    # the Python backend takes it
    bars = {"x_bar": _strided(x_bar), "data_bar": _strided(np.zeros_like(problem[2]))}
    py = adsrc.differentiate(gauss_seidel, wrt=("data", "x", "b"), outputs=("x",), backend="python")
    g_data, g_x, g_b = py.adjoint(*_copy(problem), **bars)
    _close(np.ascontiguousarray(g_data), want_data, "data_bar")
    _close(np.ascontiguousarray(g_x), want_x, "x_bar")
    _close(g_b, want_b, "b_bar")


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_read_only_arrays_and_bad_out_bar(backend):
    """More bad calls, refused before anything runs: a read-only array the kernel writes, a
    read-only bar, out_bar for an adjoint without the return value, an out_bar that is not a
    number."""
    problem = _gs_problem()
    n = len(problem[4])
    f = adsrc.differentiate(gauss_seidel, wrt=("data", "b"), outputs=("x",), backend=backend)

    def refused(args, match, **bars):
        snapshot, before = _copy(args), _copy_bars(bars)
        with pytest.raises(adsrc.ArgumentError, match=match):
            f.adjoint(*args, **bars)
        for got, was in zip(args, snapshot):
            if isinstance(was, np.ndarray):
                np.testing.assert_array_equal(got, was)
        for key in bars:
            np.testing.assert_array_equal(bars[key], before[key])

    args = list(_copy(problem))
    args[3].flags.writeable = False                                     # x is written
    refused(args, "read-only", x_bar=np.ones(n))
    with pytest.raises(adsrc.ArgumentError, match="read-only"):
        f.primal(*args)
    args = list(_copy(problem))
    args[2].flags.writeable = False                                     # data is only read
    f.adjoint(*args, x_bar=np.ones(n))
    x_bar = np.ones(n)
    x_bar.flags.writeable = False
    refused(_copy(problem), "writeable", x_bar=x_bar)
    refused(_copy(problem), "out_bar", x_bar=np.ones(n), out_bar=2.0)

    case = CASES_BY_NAME["residual_loss"]
    g = adsrc.differentiate(case.kernel, wrt=case.wrt, outputs=("return",), backend=backend)
    args = case.make_args(np.random.default_rng(1), np.int32)
    for bad in ("1.0", np.ones(2), None):
        with pytest.raises(adsrc.ArgumentError, match="out_bar"):
            g.adjoint(*_copy(args), out_bar=bad)
    want = g.adjoint(*_copy(args), out_bar=2.0)
    for good in (2, np.float64(2.0), np.array(2.0)):
        for got, w in zip(g.adjoint(*_copy(args), out_bar=good), want):
            _close(got, w, f"out_bar={good!r}")


def test_unknown_backend():
    case = CASES_BY_NAME["residual_loss"]
    args = case.make_args(np.random.default_rng(1), np.int32)
    with pytest.raises(adsrc.AdsrcError, match="fortran"):
        adsrc.differentiate(gauss_seidel, wrt="b", outputs="x", backend="fortran")
    with pytest.raises(adsrc.AdsrcError):
        adsrc.differentiate(wrt="b", outputs="x", backend="fortran")(gauss_seidel)
    with pytest.raises(adsrc.AdsrcError):
        adsrc.grad(case.kernel, wrt=case.wrt, backend="fortran")
    with pytest.raises(adsrc.AdsrcError):
        adsrc.value_and_grad(case.kernel, wrt=case.wrt, backend="fortran")
    with pytest.raises(adsrc.AdsrcError):
        adsrc.check_grads(case.kernel, args, wrt=case.wrt, backend="fortran")
    f = adsrc.differentiate(case.kernel, wrt=case.wrt, backend="python")
    with pytest.raises(adsrc.AdsrcError):
        f.source("adjoint", args=args, backend="fortran")


# --------------------------------------------------------------------------------------------
# 4. threads
# --------------------------------------------------------------------------------------------


def test_adjoint_in_two_threads():
    f = adsrc.differentiate(gauss_seidel, wrt=("data", "b"), outputs=("x",), backend="cython")
    problems = [_gs_problem(m=40, sweeps=20, seed=seed) for seed in (1, 2)]
    seeds = [np.random.default_rng(seed).standard_normal(len(p[4])) for seed, p in
             zip((3, 4), problems)]

    def run(problem, x_bar):
        args = _copy(problem)
        bar = x_bar.copy()
        data_bar, b_bar = f.adjoint(*args, x_bar=bar)
        return data_bar, b_bar, bar, args[3]

    want = [run(p, s) for p, s in zip(problems, seeds)]     # single-threaded
    # the loops of the compiled adjoint run without the GIL
    source = f.source("adjoint")
    rev = source[source.index("cdef int gauss_seidel__rev_c("):]
    assert "with nogil:" in rev[: rev.index("\ndef ")]

    rounds = 5
    results = [[None] * rounds for _ in problems]
    errors = []
    barrier = threading.Barrier(len(problems))

    def worker(k):
        try:
            barrier.wait()
            for r in range(rounds):
                results[k][r] = run(problems[k], seeds[k])
        except BaseException as exc:       # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(problems))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors
    for k in range(len(problems)):
        for r in range(rounds):
            for got, expected in zip(results[k][r], want[k]):
                np.testing.assert_array_equal(got, expected)


_CAPTURE_RACE = textwrap.dedent("""
    import os, sys, threading
    from adsrc.compiling.cython_build import _captured_output

    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    overlapped = []

    def first():                 # enters first
        with _captured_output():
            a_in.set()
            print("print inside the first capture", flush=True)
            os.write(1, b"fd 1 inside the first capture\\n")
            # the second thread tries to enter now: it must wait until this one has left
            overlapped.append(b_in.wait(timeout=1.0))
        a_out.set()

    def second():                # tries to enter while the first is inside
        a_in.wait()
        with _captured_output():
            b_in.set()
            overlapped.append(not a_out.is_set())
            print("print inside the second capture", flush=True)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("overlapped:", any(overlapped), flush=True)
    print("print after the builds", flush=True)
    os.write(1, b"fd 1 after the builds\\n")
    sys.stderr.write("stderr after the builds\\n")
    sys.stderr.flush()
""")


def test_builds_in_two_threads_keep_the_process_output():
    """Two threads that build a module at the same time (first calls of two new kernels, e.g.
    ``f.adjoint`` and ``g.adjoint`` in two threads) must leave the process's stdout/stderr as
    they were.  The build's output capture swaps fds 1/2 and sys.stdout/stderr process-wide;
    interleaved as enter A, enter B, leave A, leave B, the second restores the first's sink
    and the process's output is lost for good.  Captures are therefore serialised: here the
    second thread tries to enter while the first is inside, and must wait for it to leave."""
    result = subprocess.run([sys.executable, "-c", _CAPTURE_RACE], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "overlapped: False" in result.stdout, (result.stdout, result.stderr)
    assert "print after the builds" in result.stdout, (result.stdout, result.stderr)
    assert "fd 1 after the builds" in result.stdout, (result.stdout, result.stderr)
    assert "stderr after the builds" in result.stderr, (result.stdout, result.stderr)
    # what was printed inside a capture stayed there (it is shown only if a build fails)
    assert "inside the" not in result.stdout + result.stderr, (result.stdout, result.stderr)


_TWO_NEW_KERNELS = textwrap.dedent("""
    import os, sys, threading
    import numpy as np
    import adsrc

    def scale(x, y):
        for i in range(len(x)):
            y[i] = 3.0 * x[i]

    def square(x, y):
        for i in range(len(x)):
            y[i] = x[i] * x[i]

    kernels = [adsrc.differentiate(k, wrt="x", outputs="y", backend="cython")
               for k in (scale, square)]
    barrier = threading.Barrier(2)
    results, errors = [None, None], []

    def build_and_run(k):
        try:
            barrier.wait()
            x = np.linspace(1.0, 2.0, 4)
            (x_bar,) = kernels[k].adjoint(x, np.zeros(4), y_bar=np.ones(4))
            results[k] = x_bar.tolist()
        except BaseException as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=build_and_run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(repr((results, errors)), flush=True)
    os.write(1, b"fd 1 after the builds\\n")
    sys.stderr.write("stderr after the builds\\n")
    sys.stderr.flush()
""")


def test_two_threads_build_two_new_kernels(tmp_path):
    """The same, end to end: two threads whose first ``adjoint`` calls build at once."""
    adsrc.differentiate(spmv, wrt=("x",), outputs=("y",), backend="cython").adjoint(
        *_copy(_spmv_problem(np.int32)), y_bar=np.ones(9))
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in os.listdir(cache_dir()):          # the shared utility module, not the kernels
        if name.startswith("_adsrc_cyutility_"):
            shutil.copy2(os.path.join(cache_dir(), name), cache / name)
    script = tmp_path / "two_new_kernels.py"        # kernels need a source file
    script.write_text(_TWO_NEW_KERNELS)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            env=_subprocess_env(cache), timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and "fd 1 after the builds" in lines, (result.stdout, result.stderr)
    results, errors = eval(lines[0])
    assert not errors, errors
    x = np.linspace(1.0, 2.0, 4)
    np.testing.assert_allclose(results[0], 3.0 * np.ones(4), rtol=RTOL)
    np.testing.assert_allclose(results[1], 2.0 * x, rtol=RTOL)
    assert "stderr after the builds" in result.stderr, (result.stdout, result.stderr)
    assert len(_module_files(cache, "scale")) == len(_module_files(cache, "square")) == 1
