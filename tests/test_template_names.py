"""User names that are the placeholders of adsrc's code templates (``D``, ``T``, ``U``, ``S``,
``I``, ...): generated code must not take them for placeholders.  A local array named ``D`` made
the tangent read ``D_dot = np.zeros_like(D_dot)`` (an error, or a crash in compiled code), one
named ``T`` broke forward-mode Jacobians.  Every mode, on both backends, against finite
differences and against each other."""

import numpy as np
import pytest

import adsrc

pytestmark = pytest.mark.usefixtures("backend")


def capital_names(A, B, x):
    n = len(x)
    D = np.zeros(n)
    T = np.zeros(n)
    S = 0.0
    for I in range(n):
        D[I] = x[I] * A[I, I]
    U = np.linalg.solve(A, D)
    for K in range(n):
        T[K] = U[K] * U[K] + B[K]
        S += T[K] * x[K]
    X = T * S
    for I in range(n):
        x[I] = X[I] * D[I]
    V = np.dot(x, x)
    return V + S


def _args():
    rng = np.random.default_rng(4)
    return [rng.standard_normal((4, 4)) + 4.0 * np.eye(4), rng.uniform(0.5, 1.0, 4),
            rng.uniform(0.5, 1.0, 4)]


def _copies(args):
    return [np.copy(arg) for arg in args]


def test_gradient_matches_finite_differences():
    adsrc.check_grads(capital_names, _args(), ("A", "B", "x"), ("return", "x"))


def test_tangent_and_adjoint_pass_the_dot_product_test():
    f = adsrc.differentiate(capital_names, wrt=("A", "B", "x"), outputs=("return",))
    rng = np.random.default_rng(5)
    directions = {name + "_dot": rng.standard_normal(np.shape(arg))
                  for name, arg in zip(("A", "B", "x"), _args())}
    (forward,) = f.tangent(*_args(), **{key: np.copy(v) for key, v in directions.items()})
    gradients = f.adjoint(*_args(), out_bar=1.0)
    reverse = sum(float(np.sum(g * directions[name + "_dot"]))
                  for name, g in zip(("A", "B", "x"), gradients))
    assert forward == pytest.approx(reverse, rel=1e-11)


def test_jacobians_forward_and_reverse_agree():
    forward = adsrc.jacobian(capital_names, wrt="x", outputs="x", mode="forward")(*_args())
    reverse = adsrc.jacobian(capital_names, wrt="x", outputs="x", mode="reverse")(*_args())
    np.testing.assert_allclose(forward, reverse, rtol=1e-12, atol=1e-14)
    assert np.max(np.abs(forward)) > 0.1


def test_hessian_vector_products_match_differences_of_the_gradient():
    v = np.random.default_rng(6).standard_normal(4)
    args = _args()
    product = adsrc.hvp(capital_names, wrt="B")(*_copies(args), B_dot=v)
    gradient = adsrc.grad(capital_names, wrt="B")

    def gradient_at(t):
        moved = _copies(args)
        moved[1] = moved[1] + t * v
        return gradient(*moved)

    h = 1e-5
    differences = (gradient_at(h) - gradient_at(-h)) / (2 * h)
    np.testing.assert_allclose(product, differences, rtol=1e-6, atol=1e-8)


def test_the_names_generated_modules_bind_are_taken_from_kernels():
    """Every name a generated module imports is refused as a kernel's name (see
    adsrc.naming.TAKEN_BY_GENERATED_CODE): the lists are written apart from the modules."""
    from adsrc.backends import cython, python
    from adsrc.naming import TAKEN_BY_GENERATED_CODE
    from adsrc.runtime import compiled_tape

    imported = set(compiled_tape.NAMES)
    for line in cython.PRELUDE.splitlines() + python.module_source("", []).splitlines():
        words = line.replace(",", " ").split()
        if "import" in words or "cimport" in words:
            after = words.index("import" if "import" in words else "cimport") + 1
            imported.update(words[-1:] if "as" in words else words[after:])
    assert {"np", "math", "exp", "memcpy", "Tape"} <= imported
    assert imported <= TAKEN_BY_GENERATED_CODE
