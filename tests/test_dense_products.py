"""Dense matrix-vector products in kernels: ``A @ x``, ``A.T @ x``, ``np.dot(A, x)``, ``x @ A``
and ``np.dot(x, A)`` with A a 2-D array, matrix products ``A @ B``, ``A.T @ B``, ``np.dot(A, B)``
with A a 2-D array's name, lowered to loops (adsrc/normalize/lower_arrays.py), and ``a @ b`` of
1-D arrays.

Each derivative is checked against central finite differences (``check_grads``) and a second,
independent way: the closed-form gradient and Hessian of ``||b - A x||^2``, or the complex
step (tests/complex_step.py) in the dot-product test of the adjoint and against the tangent.
Every test runs on both backends.
"""

import ast

import numpy as np
import pytest

import adsrc
import complex_step
import dense_product_kernels as k
from differentiated import assert_primal_is_pythons

pytestmark = pytest.mark.usefixtures("backend")

N = 6


def _matrix(rng, rows=N, columns=N):
    return rng.standard_normal((rows, columns)) + 4.0 * np.eye(rows, columns)


def _cases():
    """name -> (kernel, arguments, wrt, outputs)."""
    rng = np.random.default_rng(3)
    A, B = _matrix(rng), _matrix(rng)
    wide = _matrix(rng, 4, N)
    x, b, y, z = (rng.standard_normal(N) for _ in range(4))
    M = rng.standard_normal((N, N))
    return {
        "residual_norm": (k.residual_norm, (A, x, b), ("A", "x", "b"), None),
        "residual_norm_dot": (k.residual_norm_dot, (A, x, b), ("A", "x", "b"), None),
        "dense_jacobi": (k.dense_jacobi, (A, 1.0 / np.diag(A), x, b, 3), ("A", "x", "b"),
                         ("x",)),
        "transposed_product": (k.transposed_product, (wide, x[:4], y), ("A", "x", "y"), ("y",)),
        "nested_products": (k.nested_products, (A, B, x, y), ("A", "B", "x"), ("y",)),
        "summed_products": (k.summed_products, (wide, x, z[:4]), ("A", "x", "z"), None),
        "product_into_itself": (k.product_into_itself, (A, x), ("A", "x"), ("x",)),
        "vector_matrix_products": (k.vector_matrix_products, (A, x, y), ("A", "x", "y"),
                                   ("y",)),
        "transposed_vector": (k.transposed_vector, (x, y), ("x", "y"), None),
        "matrix_products": (k.matrix_products, (wide, _matrix(rng, 4, 4), _matrix(rng), B, z),
                            ("B", "D", "K", "A", "x"), ("K", "x")),
        "conjugate_gradients": (k.conjugate_gradients, (A @ A.T + N * np.eye(N), b, x, 4),
                                ("A", "b", "x"), ("x",)),
        "products_asked_for_again": (k.products_asked_for_again, (A, B, b, z, y, M),
                                     ("A", "B", "x", "v", "y", "M"), ("y", "M")),
        "products_asked_for_again_return": (k.products_asked_for_again, (A, B, b, z, y, M),
                                            ("A", "B", "x", "v", "y", "M"), None),
    }


CASES = _cases()
ARRAY_OUTPUTS = sorted(name for name, case in CASES.items() if case[3] is not None)


def _copies(args):
    return [np.array(arg, copy=True) if isinstance(arg, np.ndarray) else arg for arg in args]


@pytest.mark.parametrize("name", sorted(CASES))
def test_finite_differences(name):
    """A step of 1e-5 (of each argument's largest entry): with check_grads' 1e-4, the central
    differences of four CG steps (entries of A up to 10) are off by 2e-6, their O(h^2) error;
    at 1e-5 they agree to 1e-7 with the adjoint, which the complex step checks exactly."""
    kernel, args, wrt, outputs = CASES[name]
    adsrc.check_grads(kernel, _copies(args), wrt=wrt, outputs=outputs, step=1e-5)


@pytest.mark.parametrize("kernel", [k.residual_norm, k.residual_norm_dot])
def test_the_gradient_of_a_residual_norm_is_its_closed_form(kernel):
    A, x, b = CASES["residual_norm"][1]
    r = b - A @ x
    grads = adsrc.grad(kernel, wrt=("A", "x", "b"))(A, x, b)
    np.testing.assert_allclose(grads[0], -2.0 * np.outer(r, x), rtol=1e-12)
    np.testing.assert_allclose(grads[1], -2.0 * A.T @ r, rtol=1e-12)
    np.testing.assert_allclose(grads[2], 2.0 * r, rtol=1e-12)


def test_the_hessian_of_a_residual_norm_is_twice_AtA():
    """One direction, and a stack of three in one vector-mode sweep."""
    A, x, b = CASES["residual_norm"][1]
    vs = np.random.default_rng(4).standard_normal((3, N))
    hvp = adsrc.hvp(k.residual_norm, wrt="x")
    np.testing.assert_allclose(hvp(A, x, vs[0], b), 2.0 * A.T @ (A @ vs[0]), rtol=1e-12)
    np.testing.assert_allclose(hvp(A, x, vs, b), 2.0 * vs @ A.T @ A, rtol=1e-12)


@pytest.mark.parametrize("name", ARRAY_OUTPUTS)
def test_the_adjoint_passes_the_dot_product_test_against_the_complex_step(name):
    kernel, args, wrt, outputs = CASES[name]
    complex_step.assert_adjoint_passes_the_dot_product_test(kernel, _copies(args), wrt, outputs,
                                                            np.random.default_rng(5))


@pytest.mark.parametrize("name", ARRAY_OUTPUTS)
def test_the_tangent_is_the_complex_step(name):
    kernel, args, wrt, outputs = CASES[name]
    complex_step.assert_tangent_is_the_complex_step(kernel, _copies(args), wrt, outputs,
                                                    np.random.default_rng(6))


@pytest.mark.parametrize("name", ["nested_products", "matrix_products",
                                  "products_asked_for_again"])
def test_the_generated_primal_computes_numpys_values(name):
    """Sums computed once into arrays of their own, before the statement, hold what NumPy's
    temporaries hold: the generated primal against the kernel run by NumPy, to rounding (its
    BLAS sums in another order)."""
    kernel, args, wrt, outputs = CASES[name]
    assert_primal_is_pythons(kernel, args, wrt, outputs, rtol=1e-12, atol=1e-14)


def test_hessian_vector_products_through_sums_computed_once():
    """H v (tangent over adjoint) by A through the arrays lowering computes products and row
    sums into, overwritten on every trip of a loop: against central differences of the
    gradient, for one direction and a stack of two in one vector-mode sweep."""
    kernel, args, _, _ = CASES["products_asked_for_again_return"]
    A = args[0]
    V = np.random.default_rng(7).standard_normal((2,) + A.shape)
    gradient = adsrc.grad(kernel, wrt="A")
    hvp = adsrc.hvp(kernel, wrt="A")
    h = 1e-6
    for v in V:
        plus, minus = (gradient(A + sign * h * v, *_copies(args[1:])) for sign in (1.0, -1.0))
        differences = (plus - minus) / (2.0 * h)
        np.testing.assert_allclose(hvp(A, v, *_copies(args[1:])), differences, rtol=1e-6,
                                   atol=1e-6 * np.max(np.abs(differences)))
    stacked = hvp(A, V, *_copies(args[1:]))
    np.testing.assert_allclose(stacked[1], hvp(A, V[1], *_copies(args[1:])), rtol=1e-12,
                               atol=1e-14)


def _deepest_loops(tree):
    """How deep ``for`` loops nest in a syntax tree."""
    inner = max((_deepest_loops(child) for child in ast.iter_child_nodes(tree)), default=0)
    return inner + isinstance(tree, ast.For)


@pytest.mark.parametrize("name, depth", [("nested_products", 2), ("matrix_products", 3),
                                         ("products_asked_for_again", 3)])
def test_a_sum_asked_for_again_is_computed_once(name, depth):
    """An element of B @ x in A @ (B @ x) is asked for once per row of A; computed where it is
    used, a row of B would be summed for each, n^3 work in three nested loops (the reverse
    sweep recomputing it the same way).  Lowering computes such sums once, into an array,
    before the statement: two loops deep for a matrix-vector product of one, three for the
    element stiffness B.T @ (D @ B) (a row times a column for each element) and for the
    softmax over rows in a loop."""
    kernel, args, wrt, outputs = CASES[name]
    f = adsrc.differentiate(kernel, wrt=wrt, outputs=outputs, backend="python")
    module = ast.parse(f.source("adjoint", args=_copies(args)))
    sweeps = [node for node in module.body if isinstance(node, ast.FunctionDef)]
    assert len(sweeps) == 2
    assert [_deepest_loops(sweep) for sweep in sweeps] == [depth, depth]


@pytest.mark.parametrize("kernel, args, outputs, message", [
    (k.product_of_an_expression, (np.eye(3), np.ones(3), np.ones(3)), ("y",),
     "with M the name of a 2-D array"),
    (k.product_of_floats, (1.0, 2.0), None, "products of dense arrays are supported as"),
])
def test_unsupported_products_are_refused_at_their_line(kernel, args, outputs, message):
    with pytest.raises(adsrc.UnsupportedError) as error:
        adsrc.check_grads(kernel, args, wrt=complex_step.parameters(kernel)[:2], outputs=outputs)
    assert message in str(error.value)
    assert f"dense_product_kernels.py:{kernel.__code__.co_firstlineno + 1}:" in str(error.value)


def test_a_matrix_of_the_wrong_shape_is_refused_before_anything_is_written():
    A = np.ones((4, N))
    f = adsrc.differentiate(k.transposed_product, wrt=("A", "x"), outputs=("y",))
    y = np.arange(float(N + 1))             # A.T @ x has N entries, y N + 1
    with pytest.raises(AssertionError, match="operands of different shapes"):
        f.adjoint(A, np.ones(4), y, y_bar=np.ones(N + 1))
    np.testing.assert_array_equal(y, np.arange(float(N + 1)))
