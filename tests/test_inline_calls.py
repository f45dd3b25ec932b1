"""Calls of helpers that return arrays or several values (adsrc/normalize/inline_calls.py): the
caller gets the helper's body.  Kernels in tests/inline_kernels.py; one calls shipped kernels
through their module (``solvers.sor(...)``).

Each derivative is checked against central finite differences (``check_grads``) and a second,
independent way: the closed forms of the gradients and Hessians of ``||b - A x||^2`` and of a
variance, or the complex step (tests/complex_step.py) of the kernel as Python runs it, for the
adjoint (the dot-product test, or the derivative of the returned value) and for the tangent.
Every test runs on both backends.
"""

import inspect

import numpy as np
import pytest
import scipy.sparse as sp

import adsrc
import complex_step
import inline_kernels as k
from differentiated import assert_primal_is_pythons

pytestmark = pytest.mark.usefixtures("backend")

N = 6


def _cases():
    """name -> (kernel, arguments, wrt, outputs)."""
    rng = np.random.default_rng(11)
    A = rng.standard_normal((N, N)) + 4.0 * np.eye(N)
    csr = sp.csr_matrix(A)
    x, b, y = (rng.standard_normal(N) for _ in range(3))
    return {
        "residual_norm": (k.residual_norm, (A, x, b), ("A", "x", "b"), None),
        "jacobi_by_products": (k.jacobi_by_products,
                               (csr.indptr, csr.indices, csr.data, 1.0 / np.diag(A), x, b, 0.7,
                                3), ("data", "x", "b", "omega"), ("x",)),
        "composed": (k.composed, (x, b, 0.8, y), ("x", "b", "a", "y"), None),
        "composed_y": (k.composed, (x, b, 0.8, y), ("x", "b", "a"), ("y",)),
        "through_others": (k.through_others, (x, 0.8), ("x", "a"), None),
        "writes_through_a_helper": (k.writes_through_a_helper, (x, 0.8), ("x", "a"), None),
        "argument_bound_to_returned_arrays": (k.argument_bound_to_returned_arrays,
                                              (x, b, 0.8, 3), ("b", "a"), None),
        "relaxation": (k.relaxation, (0.3 * x, b, 0.4, 3), ("x", "b", "omega"), None),
        "into_its_argument": (k.into_its_argument, (x, b), ("x", "b"), None),
        "relaxed_beside_writes": (k.relaxed_beside_writes, (0.3 * x, b, 0.4),
                                  ("x", "b", "omega"), None),
        "variance": (k.variance, (x,), ("x",), None),
        "damped_steps": (k.damped_steps, (A, x, b, 0.05, 3), ("A", "x", "b", "step"), None),
        "rotations": (k.rotations, (x, y, 0.8, 0.6), ("x", "y", "c", "s"), None),
        "rotations_xy": (k.rotations, (x, y, 0.8, 0.6), ("x", "y", "c", "s"), ("x", "y")),
        "through_several": (k.through_several, (x, b, 0.7), ("x", "b", "a"), None),
        "into_a_helpers_out": (k.into_a_helpers_out, (x, y), ("x",), None),
        # several values returned early (x's first two squares add up to more than 0.5) or at
        # the end; an array among them (x[2] ** 2 is below 0.2; no square is below -1)
        "moments_returned_early": (k.calls_moments_up_to, (x, 0.5), ("x",), None),
        "moments_returned_at_the_end": (k.calls_moments_up_to, (x, 100.0), ("x",), None),
        "array_returned_early": (k.calls_squares_until, (x, 0.2), ("x", "lo"), None),
        "array_returned_at_the_end": (k.calls_squares_until, (x, -1.0), ("x", "lo"), None),
        "through_their_module": (k.through_their_module,
                                 (csr.indptr, csr.indices, csr.data, 0.3 * x, b, 0.9),
                                 ("data", "x", "b", "omega"), None),
    }


CASES = _cases()
RETURNING = sorted(name for name, case in CASES.items() if case[3] is None)
MUTATING = sorted(name for name, case in CASES.items() if case[3] is not None)


def _copies(args):
    return [np.array(arg, copy=True) if isinstance(arg, np.ndarray) else arg for arg in args]


def _directions(kernel, args, wrt, rng):
    params = complex_step.parameters(kernel)
    return {p: rng.standard_normal(np.shape(args[params.index(p)])) for p in wrt}


@pytest.mark.parametrize("name", sorted(CASES))
def test_finite_differences(name):
    kernel, args, wrt, outputs = CASES[name]
    adsrc.check_grads(kernel, _copies(args), wrt=wrt, outputs=outputs)


def test_the_gradient_and_hessian_of_a_residual_norm_are_their_closed_forms():
    A, x, b = CASES["residual_norm"][1]
    r = b - A @ x
    grads = adsrc.grad(k.residual_norm, wrt=("A", "x", "b"))(A, x, b)
    np.testing.assert_allclose(grads[0], -2.0 * np.outer(r, x), rtol=1e-12)
    np.testing.assert_allclose(grads[1], -2.0 * A.T @ r, rtol=1e-12)
    np.testing.assert_allclose(grads[2], 2.0 * r, rtol=1e-12)
    v = np.random.default_rng(12).standard_normal(N)
    hvp = adsrc.hvp(k.residual_norm, wrt="x")(A, x, v, b)
    np.testing.assert_allclose(hvp, 2.0 * A.T @ (A @ v), rtol=1e-12)


def test_the_gradient_and_hessian_of_a_variance_are_their_closed_forms():
    """Through a helper returning two floats."""
    x = CASES["variance"][1][0]
    n = len(x)
    grad = adsrc.grad(k.variance, wrt="x")(x)
    np.testing.assert_allclose(grad, 2.0 * (x - np.mean(x)) / n, rtol=1e-12)
    v = np.random.default_rng(16).standard_normal(n)
    hvp = adsrc.hvp(k.variance, wrt="x")(x, v)
    np.testing.assert_allclose(hvp, 2.0 * (v - np.mean(v)) / n, rtol=1e-12)


@pytest.mark.parametrize("name", RETURNING)
def test_the_gradient_is_the_complex_step(name):
    kernel, args, wrt, _ = CASES[name]
    direction = _directions(kernel, args, wrt, np.random.default_rng(13))
    want = complex_step.value_derivative(kernel, _copies(args), wrt, direction)
    grads = adsrc.grad(kernel, wrt=wrt)(*_copies(args))
    got = sum(float(np.sum(g * direction[p])) for p, g in zip(wrt, grads))
    assert got == pytest.approx(want, rel=1e-12)
    assert abs(want) > 1e-3


@pytest.mark.parametrize("name", MUTATING)
def test_the_adjoint_and_the_tangent_of_mutated_arrays_are_the_complex_steps(name):
    """The adjoint by the dot-product test, the tangent directly."""
    kernel, args, wrt, outputs = CASES[name]
    complex_step.assert_adjoint_passes_the_dot_product_test(kernel, _copies(args), wrt, outputs,
                                                            np.random.default_rng(14))
    complex_step.assert_tangent_is_the_complex_step(kernel, _copies(args), wrt, outputs,
                                                    np.random.default_rng(15))


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_generated_primal_computes_pythons_values(name):
    """What the caller computes with the helpers' bodies in its own is what Python computes
    calling them, arrays left as Python leaves them."""
    kernel, args, wrt, outputs = CASES[name]
    assert_primal_is_pythons(kernel, args, wrt, outputs, rtol=1e-13, atol=1e-15)


def test_inlined_locals_are_named_after_their_helper():
    """The generated code a user reads names a helper's locals after the helper, and a call's
    array after the caller's name for it; the call is left only in the comments that quote
    the caller's lines."""
    kernel, args, wrt, outputs = CASES["jacobi_by_products"]
    source = adsrc.differentiate(kernel, wrt=wrt, outputs=outputs, backend="python").source(
        "adjoint", args=_copies(args))
    assert "acc_csr_product = 0.0" in source
    assert "y = np.zeros_like(x)" in source
    calls = [line.strip() for line in source.splitlines() if "csr_product(" in line]
    assert calls and all(line.startswith("# line ") for line in calls)


def test_values_a_helper_computes_into_its_locals_take_the_callers_names():
    """``s, q = moments(x)``: the helper's loop accumulates into the caller's s and q; in
    ``a, b = rotated(b, a, c, s)`` the helper reads the targets, so its values are computed
    first and stored after."""
    source = adsrc.differentiate(k.variance, wrt="x", backend="python").source(
        "adjoint", args=(np.ones(3),))
    assert "s = s + x[i_moments]" in source
    assert "q = q + x[i_moments] * x[i_moments]" in source
    _, args, wrt, _ = CASES["rotations"]
    source = adsrc.differentiate(k.rotations, wrt=wrt, backend="python").source(
        "adjoint", args=_copies(args))
    assert "value_rotated_3 = c * b - s * a\n" in source
    assert "value_rotated_4 = s * b + c * a\n" in source
    assert "a = value_rotated_3\n" in source
    assert "b = value_rotated_4\n" in source


@pytest.mark.parametrize("kernel, args, message, where, text", [
    (k.calls_a_recursive_helper, (np.ones(3),), "'recursive' calls itself", k.recursive,
     "return v"),
    (k.calls_a_helper_that_calls_itself, (np.ones(3),),
     "'recursive_in_place' calls itself and returns an array", k.recursive_in_place,
     "def recursive_in_place"),
    (k.reads_what_a_helper_writes, (np.ones(3), 2.0),
     "'squares_after_scaling' writes the array 'x', which the rest of this statement reads",
     k.reads_what_a_helper_writes, "squares_after_scaling(x, a)"),
    (k.in_a_while_condition, (np.ones(3),), "in a 'while' condition", k.in_a_while_condition,
     "doubled(x)"),
    (k.in_a_branch_of_a_choice, (np.ones(3), 1.0), "branch of 'a if c else b' is chosen",
     k.in_a_branch_of_a_choice, "doubled(x)"),
    (k.moments_kept_whole, (np.ones(3),), "'moments' returns 2 values: unpack them into as "
     "many names", k.moments_kept_whole, "m = moments(x)"),
    (k.calls_forwards_moments, (np.ones(3),), "'moments' returns 2 values: unpack them",
     k.forwards_moments, "return moments(x)"),
    (k.moments_into_three, (np.ones(3),), "'moments' returns 2 values, unpacked here into 3",
     k.moments_into_three, "s, q, r = moments(x)"),
    (k.one_value_into_two, (np.ones(3),), "'doubled' returns one value, unpacked here into 2",
     k.one_value_into_two, "u, v = doubled(x)"),
    (k.calls_two_or_three, (np.ones(3),), "this 'return' gives 3 values, an earlier one 2 "
     "values", k.two_or_three, "return x[0], x[1], x[2]"),
    (k.calls_squares_until_uncopied, (np.ones(3),), "'squares_until_uncopied' returns from "
     "inside a loop or branch, and one of its returns gives its array 'y', which is written "
     "in place",
     k.calls_squares_until_uncopied, "u, t = squares_until_uncopied(x, 0.5)"),
    (k.calls_first_square_below, (np.ones(3),), "'first_square_below' returns from inside a "
     "loop or branch, and one of its returns gives its array 'y'", k.calls_first_square_below,
     "first_square_below(x, 0.5)"),
    # the return that needs the copy is the last one, not the one inside the loop
    (k.calls_copy_early_then_uncopied, (np.ones(3),), "so return a copy at each 'return y'",
     k.calls_copy_early_then_uncopied, "copy_early_then_uncopied(x, 0.5)"),
    (k.calls_twice, (np.ones(3),), "'twice' returns one array as two of its values",
     k.calls_twice, "u, w = twice(x)"),
])
def test_calls_that_cannot_be_inlined_are_refused_at_their_line(kernel, args, message, where,
                                                                 text):
    """At the line of ``text`` in ``where``: the call, or the helper's line where typing fails
    (the value of a recursive call taken to be a float)."""
    x = args[0]
    with pytest.raises(adsrc.UnsupportedError) as error:
        adsrc.grad(kernel, wrt="x")(*args)
    assert message in str(error.value)
    np.testing.assert_array_equal(x, np.ones(3))
    lines, first = inspect.getsourcelines(where)
    line = first + next(i for i, line in enumerate(lines) if text in line)
    assert f"inline_kernels.py:{line}:" in str(error.value)


def test_a_kernel_still_returns_a_scalar_only():
    with pytest.raises(adsrc.UnsupportedError, match="kernels may return a scalar, not an array"):
        adsrc.differentiate(k.doubled, wrt="v").adjoint(np.ones(3), out_bar=1.0)
    with pytest.raises(adsrc.UnsupportedError,
                       match="kernels may return a scalar, not several values"):
        adsrc.differentiate(k.returns_two_values, wrt="x").adjoint(np.ones(3), out_bar=1.0)
