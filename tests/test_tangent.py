"""Tangent (forward) mode, ``f.tangent(*args, **dots)``, on the whole corpus and both backends.

Every kernel of tests/corpus is checked two ways:

* the dot-product test against the adjoint, an independent transformation:
  ``<w, J v>`` from ``f.tangent`` equals ``<J^T w, v>`` from ``f.adjoint`` to 1e-10 relative;
* against fourth-order central finite differences of the primal in the same direction.

Also the semantics of docs/API.md: arguments mutated as the primal mutates them, default zero
directions, tangents returned per output, inactive values without tangents, bad directions
refused before anything runs.
"""

import numpy as np
import pytest

import adsrc
from corpus import kernels as K
from corpus.hand_adjoints import CASES
from corpus.problems import poisson2d_csr

pytestmark = pytest.mark.usefixtures("backend")   # every test on both backends

FD_STEP = 1e-3
FD_RTOL = 1e-6


def _params():
    # one index type: the tangent code does not depend on it (test_corpus covers both types)
    return [pytest.param(case, np.int32, id=case.name) for case in CASES]


def _copies(args):
    return [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]


def _directions(case, args, rng):
    out = {}
    for param in case.wrt:
        value = args[case.arg_index(param)]
        out[param] = rng.standard_normal(value.shape) if isinstance(value, np.ndarray) \
            else float(rng.standard_normal())
    return out


def _outputs_of(case, args, returned):
    """The outputs' values after a primal run on ``args`` that returned ``returned``."""
    return {out: (returned if out == "return" else args[case.arg_index(out)].copy())
            for out in case.outputs}


def _shifted(case, args, v, h):
    moved = _copies(args)
    for param, direction in v.items():
        moved[case.arg_index(param)] = moved[case.arg_index(param)] + h * direction
    return moved


def _pairing(w, values):
    return sum(float(np.sum(w[out] * values[out])) for out in w)


@pytest.mark.parametrize("case, int_dtype", _params())
def test_dot_product_with_the_adjoint(case, int_dtype):
    rng = np.random.default_rng(21)
    args = case.make_args(rng, int_dtype)
    v = _directions(case, args, rng)
    f = adsrc.differentiate(case.kernel, wrt=case.wrt, outputs=case.outputs)
    tangents = f.tangent(*_copies(args), **{p + "_dot": np.copy(d) for p, d in v.items()})
    assert len(tangents) == len(case.outputs)
    jv = dict(zip(case.outputs, tangents))
    w = {out: (rng.standard_normal(np.shape(jv[out])) if out != "return" else 0.7)
         for out in case.outputs}
    bars = {out + "_bar": w[out].copy() for out in case.outputs if out != "return"}
    if "return" in case.outputs:
        bars["out_bar"] = w["return"]
    grads = f.adjoint(*_copies(args), **bars)
    forward = _pairing(w, jv)
    reverse = sum(float(np.sum(g * v[p])) for p, g in zip(case.wrt, grads))
    assert forward == pytest.approx(reverse, rel=1e-10)
    assert abs(forward) > 1e-6


@pytest.mark.parametrize("case, int_dtype", _params())
def test_finite_differences(case, int_dtype):
    rng = np.random.default_rng(22)
    args = case.make_args(rng, int_dtype)
    v = _directions(case, args, rng)
    f = adsrc.differentiate(case.kernel, wrt=case.wrt, outputs=case.outputs)
    moved = _copies(args)
    tangents = f.tangent(*moved, **{p + "_dot": np.copy(d) for p, d in v.items()})
    w = {out: rng.standard_normal(np.shape(t)) for out, t in zip(case.outputs, tangents)}

    def value(h):
        shifted = _shifted(case, args, v, h)
        return _pairing(w, _outputs_of(case, shifted, case.kernel(*shifted)))

    fd = (-value(2 * FD_STEP) + 8 * value(FD_STEP) - 8 * value(-FD_STEP)
          + value(-2 * FD_STEP)) / (12 * FD_STEP)
    assert _pairing(w, dict(zip(case.outputs, tangents))) == pytest.approx(fd, rel=FD_RTOL)


@pytest.mark.parametrize("case", [c for c in CASES if c.name in ("sor", "newton_cubic",
                                                                  "vcycle")],
                         ids=lambda c: c.name)
def test_arguments_change_as_the_primal_changes_them(case):
    rng = np.random.default_rng(23)
    args = case.make_args(rng, np.int32)
    want = _copies(args)
    case.kernel(*want)
    got = _copies(args)
    f = adsrc.differentiate(case.kernel, wrt=case.wrt, outputs=case.outputs)
    f.tangent(*got)                                  # every direction zero
    for g, expected in zip(got, want):
        if isinstance(expected, np.ndarray):
            np.testing.assert_allclose(g, expected, rtol=1e-13, atol=1e-15)
    if "return" in case.outputs:
        value = f.tangent(*_copies(args))[case.outputs.index("return")]
        assert value == 0.0


def test_tangents_are_returned_per_output_and_written_in_place():
    m = 4
    indptr, indices, data = poisson2d_csr(m)
    rng = np.random.default_rng(24)
    x, b = rng.uniform(-1, 1, m * m), rng.uniform(-1, 1, m * m)
    f = adsrc.differentiate(K.gauss_seidel, wrt=("x", "b"), outputs=("x",))
    x_dot, b_dot = rng.standard_normal(m * m), rng.standard_normal(m * m)
    b_dot_before = b_dot.copy()
    (x_tangent,) = f.tangent(indptr, indices, data, x, b, 2, x_dot=x_dot, b_dot=b_dot)
    assert x_tangent is x_dot                       # the tangent of x's final value, in place
    np.testing.assert_array_equal(b_dot, b_dot_before)     # an input's direction is kept
    # no x_dot: the direction of x is zero, and a new array carries its tangent
    (fresh,) = f.tangent(indptr, indices, data, rng.uniform(-1, 1, m * m), b, 2, b_dot=b_dot)
    assert isinstance(fresh, np.ndarray) and np.any(fresh != 0.0)


def relaxed_energy(x, b, sweeps):
    for sweep in range(sweeps):
        x[:] = x + 0.25 * (b - x * x)
    return np.dot(x, x)


def test_the_direction_of_a_written_array_that_is_not_an_output_is_kept():
    """The kernel writes x, and returns the value that is its only output: x_dot is a
    direction the caller may reuse, left as passed, in one-direction and vector mode alike
    (the generated code carries x's tangent in an array, which ends as the tangent of x's
    final value)."""
    rng = np.random.default_rng(25)
    x, b = rng.uniform(0.5, 1.0, 5), rng.uniform(0.5, 1.0, 5)
    f = adsrc.differentiate(relaxed_energy, wrt="x")
    x_dot = rng.standard_normal(5)
    stack = np.stack([x_dot, 2.0 * x_dot])
    kept, stack_kept = x_dot.copy(), stack.copy()
    (one,) = f.tangent(x.copy(), b, 3, x_dot=x_dot)
    (two,) = f.tangent(x.copy(), b, 3, x_dot=stack)
    np.testing.assert_array_equal(x_dot, kept)
    np.testing.assert_array_equal(stack, stack_kept)
    h = 1e-6
    fd = (relaxed_energy(x + h * x_dot, b, 3) - relaxed_energy(x - h * x_dot, b, 3)) / (2 * h)
    assert one == pytest.approx(fd, rel=1e-7)
    np.testing.assert_allclose(two, [one, 2.0 * one], rtol=1e-13)


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_read_only_directions_are_taken_where_the_call_does_not_write_them(backend):
    """A direction left as passed (of an array the kernel does not write, or of a written
    array that is not an output) may be read-only: both backends refused it ('must be
    writeable'), the compiled tangent taking every direction as a writeable memoryview.  The
    direction of an output, which ends as its tangent, must be writeable."""
    rng = np.random.default_rng(26)
    x, b = rng.uniform(0.5, 1.0, 5), rng.uniform(0.5, 1.0, 5)
    x_dot, b_dot = rng.standard_normal(5), rng.standard_normal(5)
    frozen = {}
    for name, value in (("x_dot", x_dot), ("b_dot", b_dot)):
        frozen[name] = value.copy()
        frozen[name].flags.writeable = False
    f = adsrc.differentiate(relaxed_energy, wrt=("x", "b"), backend=backend)
    (tangent,) = f.tangent(x.copy(), b, 3, **frozen)
    (writeable,) = f.tangent(x.copy(), b, 3, x_dot=x_dot, b_dot=b_dot)
    assert tangent == writeable
    h = 1e-6
    fd = (relaxed_energy(x + h * x_dot, b + h * b_dot, 3)
          - relaxed_energy(x - h * x_dot, b - h * b_dot, 3)) / (2 * h)
    assert tangent == pytest.approx(fd, rel=1e-7)
    np.testing.assert_array_equal(frozen["x_dot"], x_dot)
    # the adjoint's pairing: <grad, v> is the tangent (a second method)
    x_bar, b_bar = f.adjoint(x.copy(), b, 3)
    assert tangent == pytest.approx(x_bar @ x_dot + b_bar @ b_dot, rel=1e-12)

    m = 3
    indptr, indices, data = poisson2d_csr(m)
    g = adsrc.differentiate(K.gauss_seidel, wrt=("x", "b"), outputs=("x",), backend=backend)
    b_frozen = np.ones(m * m)
    b_frozen.flags.writeable = False
    (x_tangent,) = g.tangent(indptr, indices, data, np.zeros(m * m), np.ones(m * m), 2,
                             b_dot=b_frozen)
    assert np.any(x_tangent != 0.0)
    x, x_frozen = np.zeros(m * m), np.ones(m * m)
    x_frozen.flags.writeable = False
    with pytest.raises(adsrc.ArgumentError, match="x_dot must be writeable"):
        g.tangent(indptr, indices, data, x, np.ones(m * m), 2, x_dot=x_frozen)
    np.testing.assert_array_equal(x, np.zeros(m * m))


def test_inactive_values_get_no_tangent():
    m = 3
    indptr, indices, data = poisson2d_csr(m)
    x, b = np.zeros(m * m), np.ones(m * m)
    f = adsrc.differentiate(K.gauss_seidel, wrt=("b",), outputs=("x",))
    f.tangent(indptr, indices, data, x, b, 1, b_dot=np.ones(m * m))
    source = f.source("tangent")
    assert "acc_dot" in source and "x_dot" in source and "b_dot" in source
    for inactive in ("data_dot", "diag_dot", "indices_dot", "j_dot", "k_dot", "n_dot"):
        assert inactive not in source


@pytest.mark.parametrize("dots, message", [
    ({"data_dot": np.ones(3)}, "data_dot"),                  # data is not in wrt
    ({"b_dot": np.ones(4)}, "shape"),
    ({"b_dot": np.ones(9, dtype=np.float32)}, "float64"),
    ({"omega_dot": 1.0}, "omega_dot"),
])
def test_bad_directions_are_refused_before_anything_runs(dots, message):
    m = 3
    indptr, indices, data = poisson2d_csr(m)
    x, b = np.linspace(0, 1, m * m), np.ones(m * m)
    before = x.copy()
    f = adsrc.differentiate(K.gauss_seidel, wrt=("b",), outputs=("x",))
    with pytest.raises(adsrc.ArgumentError, match=message):
        f.tangent(indptr, indices, data, x, b, 1, **dots)
    np.testing.assert_array_equal(x, before)
