"""Derivative rules of library calls (adsrc.rule, and the built-in rules of np.linalg.solve,
np.linalg.norm and adsrc.sparse): gradients against finite differences and against the tangent
mode (the dot-product test: the rule's tangent part against its backward part), closed forms,
mutation safety, and errors."""

import importlib.util
import pathlib
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse as sp

import adsrc
from adsrc.runtime import rule_calls
from tests import rule_kernels as rk

pytestmark = pytest.mark.usefixtures("backend")


def _example(name):
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


QR = _example("qr_gradients")


def _copies(args):
    return [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]


def _dot_product_test(kernel, args, wrt, outputs, seed=0):
    """``<w, J v>`` by the tangent mode against ``<J^T w, v>`` by the adjoint."""
    rng = np.random.default_rng(seed)
    f = adsrc.differentiate(kernel, wrt=wrt, outputs=outputs)
    params = f.params
    v = {p: rng.standard_normal(np.shape(args[params.index(p)])) for p in wrt}
    tangents = f.tangent(*_copies(args), **{p + "_dot": np.copy(d) if np.ndim(d) else float(d)
                                             for p, d in v.items()})
    w = {out: rng.standard_normal(np.shape(t)) for out, t in zip(outputs, tangents)}
    forward = sum(float(np.sum(w[out] * t)) for out, t in zip(outputs, tangents))
    bars = {out + "_bar": w[out].copy() for out in outputs if out != "return"}
    if "return" in outputs:
        bars["out_bar"] = float(w["return"])
    grads = f.adjoint(*_copies(args), **bars)
    reverse = sum(float(np.sum(g * v[p])) for p, g in zip(wrt, grads))
    assert abs(forward) > 1e-8
    assert forward == pytest.approx(reverse, rel=1e-10)


def _poisson_1d(n, shift=2.5):
    return sp.diags([-1.0, shift, -1.0], [-1, 0, 1], shape=(n, n), format="csr")


def _dense_args(n=5, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, n)) + n * np.eye(n), rng.standard_normal(n), np.zeros(n)]


# the same kernels, two independent checks ----------------------------------------------------------

CASES = {
    "user_rule_with_scalar": (rk.cumsum_only, lambda: [np.linspace(0.1, 1.0, 6), 0.7, np.zeros(6)],
                              ("x", "alpha"), ("y",)),
    "user_rule_input_overwritten": (
        rk.cumsum_then_overwrite, lambda: [np.linspace(0.1, 1.0, 6), 0.7, np.zeros(6)],
        ("x", "alpha"), ("y", "x")),
    "dense_solve_and_norm": (rk.dense_solve_energy, _dense_args, ("A", "b"), ("return",)),
    "solve_in_a_loop": (rk.solve_in_loop, lambda: _dense_args(4, seed=2)[:3] + [3],
                        ("A", "b"), ("x", "b")),
    "norm_in_a_loop": (rk.power_iteration,
                       lambda: [np.diag([3.0, 2.0, 1.0, 0.5]) + 0.1, np.ones(4), np.zeros(4), 4],
                       ("A", "v"), ("return",)),
    "csr_products": (rk.csr_products,
                     lambda: [*_csr(sp.random(5, 4, density=0.6, random_state=3, format="csr")),
                              np.linspace(-1, 1, 4), np.zeros(5), np.zeros(4), 4],
                     ("data", "x"), ("z", "y")),
    "qr_square": (QR.qr_loss, lambda: [np.random.default_rng(5).standard_normal((4, 4)),
                                       np.random.default_rng(6).standard_normal((4, 4))],
                  ("A",), ("return",)),
    "qr_tall": (QR.qr_loss, lambda: [np.random.default_rng(7).standard_normal((6, 3)),
                                     np.random.default_rng(8).standard_normal((6, 3))],
                ("A",), ("return",)),
    "cg_solve": (rk.cg_compliance, lambda: [*_csr(_poisson_1d(7)), np.linspace(1, 2, 7),
                                            np.zeros(7)], ("data", "f"), ("return",)),
    "gmres_solve": (rk.gmres_energy,
                    lambda: [*_csr(_poisson_1d(7) + sp.diags([0.4], [2], shape=(7, 7))),
                             np.linspace(1, 2, 7), np.zeros(7)], ("data", "f"), ("return",)),
    "scipy_spelling": (rk.scipy_spelling,
                       lambda: [*_csr(_poisson_1d(6)), np.linspace(-1, 1, 6),
                                np.linspace(1, 2, 6), np.zeros(6), np.zeros(6)],
                       ("data", "x", "f"), ("return", "x")),
    "csc_spelling": (rk.csc_spelling,
                     lambda: [*_csr(sp.csc_matrix(_poisson_1d(6)
                                                  + sp.diags([0.4], [2], shape=(6, 6)))),
                              np.linspace(-1, 1, 6), np.linspace(1, 2, 6), np.zeros(6),
                              np.zeros(6)],
                     ("data", "x", "f"), ("return", "x")),
    "sparse_solve": (rk.compliance, lambda: [*_csr(_poisson_1d(7)), np.linspace(1, 2, 7),
                                             np.zeros(7)], ("data", "f"), ("return",)),
    "coo_spelling": (rk.coo_spelling, lambda: [*_coo_with_a_repeat(6), np.linspace(-1, 1, 6),
                                               np.linspace(1, 2, 6), *np.zeros((3, 6))],
                     ("data", "x", "f"), ("return", "x")),
    "csc_krylov": (rk.csc_krylov, lambda: [*_csr(sp.csc_matrix(_poisson_1d(6))),
                                           np.linspace(1, 2, 6), *np.zeros((2, 6))],
                   ("data", "f"), ("return",)),
    "factorised_steps": (rk.factorised_steps,
                         lambda: [*_csr(sp.csc_matrix(_poisson_1d(6)
                                                      + sp.diags([0.4], [2], shape=(6, 6)))),
                                  np.linspace(1, 2, 6), np.zeros(6), 3],
                         ("data", "f"), ("return",)),
    "cg_then_overwrite": (rk.cg_then_overwrite, lambda: [*_csr(_poisson_1d(7)),
                                                         np.linspace(1, 2, 7), np.zeros(7)],
                          ("data", "f"), ("return",)),
    "spsolve_then_overwrite": (rk.spsolve_then_overwrite,
                               lambda: [*_csr(_poisson_1d(7) + sp.diags([0.4], [2], shape=(7, 7))),
                                        np.linspace(1, 2, 7), np.zeros(7)],
                               ("data", "f"), ("return",)),
    "gmres_then_overwrite": (rk.gmres_then_overwrite,
                             lambda: [*_csr(_poisson_1d(7) + sp.diags([0.4], [2], shape=(7, 7))),
                                      np.linspace(1, 2, 7), np.zeros(7)],
                             ("data", "f"), ("return",)),
    "products_then_overwrite": (
        rk.products_then_overwrite,
        lambda: [*_csr(sp.random(5, 4, density=0.6, random_state=3, format="csr")),
                 np.linspace(-1, 1, 4), np.zeros(5), 4], ("data", "x"), ("return",)),
    "qr_then_overwrite": (rk.qr_then_overwrite,
                          lambda: [np.random.default_rng(7).standard_normal((5, 3)),
                                   np.random.default_rng(8).standard_normal((5, 3))],
                          ("A", "B"), ("return",)),
    "user_rule_bound_to_names": (rk.cumsum_bound,
                                 lambda: [np.linspace(-1.0, 1.0, 6), 0.7, np.zeros(6)],
                                 ("x", "alpha"), ("return", "y")),
    "newton_dense_solves": (rk.newton_dense,
                            lambda: [_dense_args(4, seed=3)[0], np.linspace(1, 2, 4),
                                     np.zeros(4), 3], ("A", "b"), ("return",)),
    "cg_with_products_in_expressions": (rk.cg_natural,
                                        lambda: [*_csr(_poisson_1d(6)), np.linspace(1, 2, 6),
                                                 np.zeros(6), 4], ("data", "b"), ("return",)),
    "solve_returned_by_a_function": (rk.solve_returned,
                                     lambda: _dense_args(4, seed=4)[:2] + [np.zeros(4)],
                                     ("A", "b"), ("return", "y")),
    "krylov_solution_bound_to_a_name": (
        rk.krylov_correction, lambda: [*_csr(_poisson_1d(6)), np.linspace(1, 2, 6),
                                       np.linspace(0, 1, 6), np.zeros(6)],
        ("data", "b", "x0"), ("return",)),
    "implicit_euler_in_place": (rk.implicit_euler,
                                lambda: [_dense_args(4, seed=7)[0], np.linspace(1, 2, 4), 3],
                                ("M", "u"), ("return", "u")),
    "sparse_results_in_place": (rk.product_in_place,
                                lambda: [*_csr(_poisson_1d(5)), np.linspace(1, 2, 5)],
                                ("data", "u"), ("return", "u")),
    "qr_in_a_loop": (rk.qr_iteration,
                     lambda: [_dense_args(4, seed=8)[0], 3], ("A",), ("return", "A")),
    "qr_rebinding_its_argument": (rk.qr_rebinding_its_argument,
                                  lambda: [np.random.default_rng(10).standard_normal((5, 3)),
                                           np.random.default_rng(11).standard_normal((5, 3))],
                                  ("A", "B"), ("return",)),
    "qr_subspace_iteration": (rk.subspace_iteration,
                              lambda: [_dense_args(5, seed=12)[0],
                                       np.random.default_rng(13).standard_normal((5, 2)), 3],
                              ("M", "Q"), ("return",)),
    "solve_result_handed_on": (rk.heavy_ball,
                               lambda: [_dense_args(4, seed=9)[0], np.linspace(0.1, 0.4, 4),
                                        np.linspace(0.2, 0.5, 4), 3], ("A", "b", "x0"),
                               ("return",)),
    "refactorised_steps": (rk.refactorised_steps,
                           lambda: [*_csr(_poisson_1d(6) + sp.diags([0.4], [2], shape=(6, 6))),
                                    np.linspace(1, 2, 6), np.linspace(0.5, 1, 6), 3],
                           ("data", "f", "u"), ("return",)),
}


def _coo_with_a_repeat(n):
    """COO triplets of a symmetric positive definite matrix, one diagonal position stored twice
    (SciPy sums repeated positions)."""
    matrix = _poisson_1d(n).tocoo()
    return [np.append(matrix.data, 0.3), np.append(matrix.row, 1).astype(np.int64),
            np.append(matrix.col, 1).astype(np.int64)]


def _csr(matrix):
    """The three arrays of a CSR matrix (of a CSC one's columns, for a CSC matrix)."""
    matrix = matrix if sp.isspmatrix_csc(matrix) else sp.csr_matrix(matrix)
    return [matrix.data.copy(), matrix.indices.astype(np.int32), matrix.indptr.astype(np.int32)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_matches_finite_differences(case):
    kernel, make_args, wrt, outputs = CASES[case]
    adsrc.check_grads(kernel, make_args(), wrt, outputs, rtol=1e-7)


@pytest.mark.parametrize("case", sorted(CASES))
def test_tangent_and_adjoint_pass_the_dot_product_test(case):
    kernel, make_args, wrt, outputs = CASES[case]
    _dot_product_test(kernel, make_args(), wrt, outputs)


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_adjoint_call_leaves_the_arrays_as_the_primal_does(case):
    """A rule's reverse part puts back the array it overwrote (``_rules.restore``); the
    adjoint call still gives the caller every array's final value."""
    kernel, make_args, wrt, outputs = CASES[case]
    after_primal, after_adjoint = make_args(), make_args()
    kernel(*after_primal)
    f = adsrc.differentiate(kernel, wrt=wrt, outputs=outputs)
    bars = {out + "_bar": np.ones_like(after_adjoint[f.params.index(out)])
            for out in outputs if out != "return"}
    f.adjoint(*after_adjoint, **bars)
    for got, want in zip(after_adjoint, after_primal):
        if isinstance(want, np.ndarray):
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


# Hessian-vector products through rules (their backward_tangent parts) --------------------------

HVP_CASES = {
    "user_rule_array": (rk.cumsum_energy, "x",
                        lambda: [np.linspace(0.1, 1.0, 6), 0.7, np.zeros(6)]),
    "user_rule_scalar": (rk.cumsum_energy, "alpha",
                         lambda: [np.linspace(0.1, 1.0, 6), 0.7, np.zeros(6)]),
    "dense_solve_matrix": (rk.dense_solve_energy, "A", _dense_args),
    "dense_solve_rhs": (rk.dense_solve_energy, "b", _dense_args),
    "norm_in_a_loop": (rk.power_iteration, "A", CASES["norm_in_a_loop"][1]),
    "sparse_solve_values": (rk.compliance, "data", CASES["sparse_solve"][1]),
    "csr_products_values": (rk.products_energy, "data", CASES["csr_products"][1]),
    "csc_spelling_values": (rk.csc_spelling, "data", CASES["csc_spelling"][1]),
    "qr_square": (QR.qr_loss, "A", CASES["qr_square"][1]),
    "qr_tall": (QR.qr_loss, "A", CASES["qr_tall"][1]),
    "cg_values": (rk.cg_compliance, "data", CASES["cg_solve"][1]),
    "gmres_values": (rk.gmres_energy, "data", CASES["gmres_solve"][1]),
    "coo_values": (rk.coo_spelling, "data", CASES["coo_spelling"][1]),
    "csc_krylov_values": (rk.csc_krylov, "data", CASES["csc_krylov"][1]),
    "factorised_values": (rk.factorised_steps, "data", CASES["factorised_steps"][1]),
    "newton_matrix": (rk.newton_dense, "A", CASES["newton_dense_solves"][1]),
    # the result overwrites an argument: the tangent sweep saves the argument before the store
    "implicit_euler_matrix": (rk.implicit_euler, "M", CASES["implicit_euler_in_place"][1]),
    "implicit_euler_state": (rk.implicit_euler, "u", CASES["implicit_euler_in_place"][1]),
    "sparse_in_place_values": (rk.product_in_place, "data", CASES["sparse_results_in_place"][1]),

    "cg_products_in_expressions": (rk.cg_natural, "data",
                                   CASES["cg_with_products_in_expressions"][1]),
}


@pytest.mark.parametrize("case", sorted(HVP_CASES))
def test_hessian_vector_products_match_differences_of_the_gradient_and_are_symmetric(case):
    kernel, wrt, make_args = HVP_CASES[case]
    args = make_args()
    position = kernel.__code__.co_varnames.index(wrt)
    rng = np.random.default_rng(9)
    u, v = (rng.standard_normal(np.shape(args[position])) for _ in range(2))
    if not np.ndim(args[position]):
        u, v = float(u), float(v)
    hvp = adsrc.hvp(kernel, wrt=wrt)

    def times(vector):
        copies = _copies(args)
        return np.asarray(hvp(*copies[:position + 1], vector, *copies[position + 1:]))

    gradient = adsrc.grad(kernel, wrt=wrt)

    def gradient_at(t):
        copies = _copies(args)
        copies[position] = copies[position] + t * v
        return np.asarray(gradient(*copies))

    h = 1e-5
    differences = (gradient_at(h) - gradient_at(-h)) / (2 * h)
    Hv, Hu = times(v), times(u)
    np.testing.assert_allclose(Hv, differences, rtol=1e-6,
                               atol=1e-7 * np.max(np.abs(differences)))
    assert float(np.sum(Hv * u)) == pytest.approx(float(np.sum(Hu * v)), rel=1e-10)


# closed forms ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", ["bar", "grid"])
def test_compliance_gradient_is_the_closed_form_per_element(shape):
    example = _example("sparse_compliance")
    network = example.bar(2000) if shape == "bar" else example.grid(30)
    rng = np.random.default_rng(4)
    stiffness = rng.uniform(0.5, 2.0, len(network.elements))
    args = network.arguments(stiffness, 0.05, rng.uniform(-1.0, 1.0, network.nodes))
    grad = adsrc.grad(example.compliance, wrt="stiffness")(*args)
    u = args[-1]
    np.testing.assert_allclose(u, sp.linalg.spsolve(
        sp.csr_matrix((args[-2], network.indices, network.indptr)).tocsc(), args[6]), rtol=1e-10)
    # d(f^T u)/dp_e = -u_e^T K_e u_e, K_e = [[1, -1], [-1, 1]] on the element's two nodes
    nodal = np.concatenate([u, [0.0]])                            # index -1: a fixed node
    a, b = network.elements[:, 0], network.elements[:, 1]
    closed_form = -(nodal[a] - nodal[b]) ** 2
    np.testing.assert_allclose(grad, closed_form, rtol=1e-8, atol=1e-12 * np.max(u ** 2))


def test_sparse_solve_adjoint_never_forms_a_dense_matrix():
    # 10^5 unknowns: a dense n x n float64 matrix would take 80 GB
    n = 100_000
    data, indices, indptr = _csr(_poisson_1d(n))
    f = np.ones(n)
    data_bar, f_bar = adsrc.grad(rk.compliance, wrt=("data", "f"))(data, indices, indptr, f,
                                                                    np.zeros(n))
    u = sp.linalg.spsolve(sp.csr_matrix((data, indices, indptr)).tocsc(), f)
    assert data_bar.shape == data.shape
    np.testing.assert_allclose(f_bar, 2 * u, rtol=1e-9)        # d(f^T A^-1 f)/df, A symmetric
    rows = np.repeat(np.arange(n), np.diff(indptr))
    np.testing.assert_allclose(data_bar, -u[rows] * u[indices], rtol=1e-9, atol=1e-9)


def test_krylov_rules_give_the_derivative_of_the_exact_solution():
    """The cg rule's gradient is spsolve's (the exact solution's); n unrolled steps of CG in
    the kernel give it along symmetric changes of A, fewer steps give the derivative of a
    different function (the iterate)."""
    n = 8
    data, indices, indptr = _csr(_poisson_1d(n, shift=3.0))
    f = np.linspace(1.0, 2.0, n)
    exact = adsrc.grad(rk.compliance, wrt="data")(data, indices, indptr, f, np.zeros(n))
    implicit = adsrc.grad(rk.cg_compliance, wrt="data")(data, indices, indptr, f, np.zeros(n))
    np.testing.assert_allclose(implicit, exact, rtol=1e-9)
    # CG solves A u = f only for a symmetric A: compare along symmetric changes of A, where
    # n unrolled steps reach the solution; apart from those they differ (CG's n-th iterate
    # is not A^-1 f for a non-symmetric A)
    matrix = sp.csr_matrix((np.arange(len(data), dtype=float), indices, indptr))
    transposed = matrix.T.tocsr()
    transposed.sort_indices()
    mirror = transposed.data.astype(int)     # entry k of A.T is entry mirror[k] of A

    def symmetric(g):
        return g + g[mirror]

    unrolled = adsrc.grad(rk.cg_unrolled, wrt="data")
    full = unrolled(data, indices, indptr, f, np.zeros(n), n)
    np.testing.assert_allclose(symmetric(full), symmetric(exact), rtol=1e-7)
    assert np.max(np.abs(full - exact)) > 1e-3 * np.max(np.abs(exact))
    early = unrolled(data, indices, indptr, f, np.zeros(n), 2)
    assert np.max(np.abs(symmetric(early) - symmetric(exact))) > 1e-3 * np.max(np.abs(exact))


# mutation safety -------------------------------------------------------------------------------------

def test_a_saved_input_the_kernel_overwrites_is_copied(monkeypatch):
    x = np.linspace(0.1, 1.0, 6)
    rk.SAVED.clear()
    args = [x.copy(), 0.7, np.zeros(6)]
    f = adsrc.differentiate(rk.cumsum_then_overwrite, wrt=("x", "alpha"), outputs=("y", "x"))
    seeds = dict(y_bar=np.ones(6), x_bar=np.ones(6))
    right = f.adjoint(*_copies(args), **{k: v.copy() for k, v in seeds.items()})
    # without the copy, the backward part reads x after the kernel overwrote it: wrong alpha_bar
    monkeypatch.setattr(rule_calls, "_detach", lambda saved, changing: saved)
    wrong = f.adjoint(*_copies(args), **{k: v.copy() for k, v in seeds.items()})
    assert not np.isclose(wrong[1], right[1])
    monkeypatch.undo()
    adsrc.check_grads(rk.cumsum_then_overwrite, args, ("x", "alpha"), ("y", "x"))


@pytest.mark.parametrize("case", ["cg_then_overwrite", "gmres_then_overwrite",
                                  "products_then_overwrite", "norm_in_a_loop"])
def test_built_in_rules_need_the_copy_of_what_the_kernel_overwrites(case, monkeypatch):
    """These built-in rules save arrays the kernel writes later: the gradients (checked against
    finite differences in the CASES tests) come out different when nothing is copied."""
    kernel, make_args, wrt, outputs = CASES[case]
    f = adsrc.differentiate(kernel, wrt=wrt, outputs=outputs)
    right = f.adjoint(*make_args(), out_bar=1.0)
    monkeypatch.setattr(rule_calls, "_detach", lambda saved, changing: saved)
    wrong = f.adjoint(*make_args(), out_bar=1.0)
    assert any(not np.allclose(w, r, rtol=1e-6) for w, r in zip(wrong, right))


def test_a_saved_input_the_kernel_never_writes_is_not_copied():
    x = np.linspace(0.1, 1.0, 6)
    f = adsrc.differentiate(rk.cumsum_only, wrt=("x", "alpha"), outputs=("y",))
    rk.SAVED.clear()
    f.adjoint(x, 0.7, np.zeros(6), y_bar=np.ones(6))
    assert len(rk.SAVED) == 1 and np.shares_memory(rk.SAVED[0], x)
    f = adsrc.differentiate(rk.cumsum_then_overwrite, wrt=("x", "alpha"), outputs=("y", "x"))
    rk.SAVED.clear()
    f.adjoint(x.copy(), 0.7, np.zeros(6), y_bar=np.ones(6), x_bar=np.ones(6))
    assert len(rk.SAVED) == 1          # the forward part saw the argument; the tape has a copy


# errors ----------------------------------------------------------------------------------------------

def test_a_solve_bound_to_an_argument_leaves_the_callers_array_alone():
    """``x = np.linalg.solve(A, b)`` binds the name to a new array, as in Python: the caller's
    x is never written.  The gradient of |x|^2 is the closed form: b_bar = 2 A^-T x,
    A_bar = -b_bar x^T."""
    A, b, _ = _dense_args(4, seed=6)
    x = np.linalg.solve(A, b)
    caller = np.full(4, 7.0)
    f = adsrc.differentiate(rk.solve_rebinding_an_argument, wrt=("A", "b"))
    A_bar, b_bar = f.adjoint(A, b, caller)
    np.testing.assert_array_equal(caller, np.full(4, 7.0))
    np.testing.assert_allclose(b_bar, 2.0 * np.linalg.solve(A.T, x), rtol=1e-12)
    np.testing.assert_allclose(A_bar, -np.outer(b_bar, x), rtol=1e-12)
    assert f.primal(A, b, caller) == pytest.approx(float(x @ x), rel=1e-13)
    np.testing.assert_array_equal(caller, np.full(4, 7.0))


def part_from_a_solve(A, b, y):
    y[1:] = np.linalg.solve(A, b)


def doubled(x):
    return 2.0 * x


@adsrc.rule(doubled, returns="float64[:]")
def doubled_forward(x):          # declares no shape
    return 2.0 * x, ()


@doubled_forward.backward
def _doubled_backward(saved, y_bar):
    return 2.0 * y_bar,


def doubled_bound_to_a_name(x):
    y = doubled(x)
    return np.sum(y)


def doubled_filling_an_array(x, y):
    y[:] = doubled(x)
    return np.sum(y)


def unknown_library_call(A, x):
    x[0] = np.linalg.det(A)


def normalised(x, y):
    s = np.linalg.norm(x)
    for i in range(len(x)):
        y[i] = x[i] / s


def solved_into(A, b, y):
    y[:] = np.linalg.solve(A, b)


def test_a_rule_error_at_run_time_names_the_users_line():
    """Errors raised by a rule while the generated code runs name the kernel's line: adsrc's
    own in their message, others (NumPy's LinAlgError, which np.linalg.solve raises for a
    singular matrix) in a note of their traceback."""
    f = adsrc.differentiate(normalised, wrt="x", outputs="y")
    with pytest.raises(adsrc.AdsrcError, match=r"test_rules.py:\d+: np.linalg.norm has no "
                       r"derivative at the zero vector, in 's = np.linalg.norm\(x\)'"):
        f.adjoint(np.zeros(3), np.zeros(3), y_bar=np.ones(3))
    singular = np.ones((3, 3))
    with pytest.raises(np.linalg.LinAlgError) as primal:
        np.linalg.solve(singular, np.ones(3))
    g = adsrc.differentiate(solved_into, wrt="b", outputs="y")
    for run in (lambda: g.adjoint(singular, np.ones(3), np.zeros(3), y_bar=np.ones(3)),
                lambda: g.tangent(singular, np.ones(3), np.zeros(3), b_dot=np.ones(3))):
        with pytest.raises(np.linalg.LinAlgError, match=str(primal.value)) as raised:
            run()
        if hasattr(raised.value, "add_note"):
            assert re.fullmatch(r"adsrc: raised by \S*test_rules.py:\d+, in "
                                r"'y\[:\] = np.linalg.solve\(A, b\)'",
                                raised.value.__notes__[-1])


def test_a_dense_solve_of_the_wrong_shapes_is_refused_as_numpy_refuses_it(backend):
    """NumPy refuses a matrix that is not square and a right-hand side of another length; the
    rule factored a 5 x 6 matrix and said 'Singular matrix', and passed SciPy's 'Shapes of lu
    (5, 5) and b (6,) are incompatible'.  Each call names the user's line, in the adjoint, the
    tangent and the Hessian-vector product, and changes nothing."""
    square = np.eye(5) * 3.0 + 0.1
    for A, b, error, message in (
            (np.ones((5, 6)), np.ones(5), np.linalg.LinAlgError, "matrix must be square, got 5 x 6"),
            (square, np.ones(6), ValueError, "right-hand side has 6 entries, but the matrix "
                                             "is 5 x 5")):
        with pytest.raises(error):
            np.linalg.solve(A, b)
        y = np.zeros(5)
        g = adsrc.differentiate(solved_into, wrt=("A", "b"), outputs="y", backend=backend)
        for run in (lambda: g.adjoint(A, b, y, y_bar=np.ones(5)),
                    lambda: g.tangent(A, b, y, b_dot=np.ones_like(b)),
                    lambda: adsrc.hvp(rk.dense_solve_energy, wrt="b", backend=backend)(
                        A, b, y, b_dot=np.ones_like(b))):
            with pytest.raises(error, match=f"np.linalg.solve: the {message}") as raised:
                run()
            if hasattr(raised.value, "add_note"):
                assert "np.linalg.solve(A, b)" in raised.value.__notes__[-1]
        assert not y.any()


def solved_and_factored(A, b):
    x = np.linalg.solve(A, b)
    Q, R = np.linalg.qr(A)
    return np.sum(x * x) + np.sum(Q * Q) + np.sum(R)


def test_a_nan_in_a_dense_solve_or_qr_gives_nan_as_numpy_does(backend):
    """NumPy's solve and qr of a matrix holding a NaN give NaN; the rules' SciPy solves checked
    their operands for finite values and raised ValueError for a kernel NumPy runs.  The value,
    the gradient, a tangent and hvp are NaN; with finite values the rules are checked against
    finite differences in the cases above."""
    A, b = np.array([[2.0, 1.0], [0.5, np.nan]]), np.ones(2)
    assert np.isnan(solved_and_factored(A, b))
    value, (A_bar, b_bar) = adsrc.value_and_grad(solved_and_factored, wrt=("A", "b"))(A, b)
    assert np.isnan(value) and np.isnan(A_bar).all() and np.isnan(b_bar).all()
    f = adsrc.differentiate(solved_and_factored, wrt=("A", "b"))
    assert np.isnan(f.tangent(A, b, A_dot=np.ones((2, 2)), b_dot=np.ones(2))[0])
    assert np.isnan(adsrc.hvp(solved_and_factored, wrt="b")(A, b, b_dot=np.ones(2))).all()


def test_an_array_result_fills_a_whole_array_or_a_name():
    A, b, _ = _dense_args(4)
    with pytest.raises(adsrc.UnsupportedError, match=r"test_rules.py:\d+:\d+: error: "
                       r"numpy.linalg.solve returns an array: assign it to a name"):
        adsrc.differentiate(part_from_a_solve, wrt="b", outputs="y").adjoint(
            A, b, np.zeros(5), y_bar=np.ones(5))


def test_a_rule_without_a_shape_fills_an_existing_array_only():
    x = np.linspace(0.5, 1.0, 4)
    with pytest.raises(adsrc.UnsupportedError, match=r"doubled returns an array whose shape "
                       r"its rule does not declare: .* adsrc.rule\(..., shape=...\)"):
        adsrc.differentiate(doubled_bound_to_a_name, wrt="x").adjoint(x.copy())
    (x_bar,) = adsrc.differentiate(doubled_filling_an_array, wrt="x").adjoint(
        x.copy(), np.zeros(4))
    np.testing.assert_allclose(x_bar, np.full(4, 2.0))


@pytest.mark.parametrize("shape, message", [
    (("x.shape[0]", "x.shape[0]"), "must be 1 expression"),
    ("x.shape[0] +", "is not a Python expression"),
    ("n", "names n, which is not a parameter of forward"),
])
def test_a_rule_shape_is_checked_when_declared(shape, message):
    with pytest.raises(adsrc.AdsrcError, match=message):
        @adsrc.rule(np.cumsum, returns="float64[:]", shape=shape)
        def forward(x):
            return np.cumsum(x), ()
    with pytest.raises(adsrc.AdsrcError, match="shape is for an array result"):
        adsrc.rule(np.sum, returns="float", shape="1")(lambda x: (np.sum(x), ()))


def matrix_passed_on(data, indices, indptr, x, y):
    A = scipy.sparse.csr_matrix((data, indices, indptr), shape=(len(y), len(x)))
    y[:] = A @ x
    y[0] = A[0, 0]


def test_a_sparse_matrix_is_used_only_in_products_and_solves():
    with pytest.raises(adsrc.UnsupportedError, match="can only be used as A @ x"):
        adsrc.differentiate(matrix_passed_on, wrt="data", outputs="y").adjoint(
            *_csr(_poisson_1d(4)), np.ones(4), np.zeros(4), y_bar=np.ones(4))


def data_written_while_factorised(data, indices, indptr, f, u):
    n = len(f)
    A = scipy.sparse.csc_matrix((data, indices, indptr), shape=(n, n))
    lu = scipy.sparse.linalg.splu(A)
    data[0] = 2.0 * data[0]
    u[:] = lu.solve(f)


def scaled_first(values):
    values[0] = 2.0 * values[0]
    return values[0]


def data_written_by_a_call_while_factorised(data, indices, indptr, f, u):
    n = len(f)
    A = scipy.sparse.csc_matrix((data, indices, indptr), shape=(n, n))
    lu = scipy.sparse.linalg.splu(A)
    first = scaled_first(data)
    u[:] = first * lu.solve(f)


def data_written_by_a_call_in_a_loop_while_converted(data, indices, indptr, f, u):
    n = len(f)
    B = scipy.sparse.csc_matrix((data, indices, indptr), shape=(n, n)).tocsr()
    for i in range(2):
        u[i] = scaled_first(data[1:])
    u[:] = u + B @ f


def factorised_in_a_branch(data, indices, indptr, f, u, flag):
    n = len(f)
    A = scipy.sparse.csc_matrix((data, indices, indptr), shape=(n, n))
    if flag > 0:
        lu = scipy.sparse.linalg.splu(A)
    u[:] = lu.solve(f)


def krylov_without_its_info(data, indices, indptr, f, u):
    A = scipy.sparse.csr_matrix((data, indices, indptr), shape=(len(f), len(f)))
    u[:] = scipy.sparse.linalg.cg(A, f)


def krylov_from_a_guess(data, indices, indptr, f, u):
    A = scipy.sparse.csr_matrix((data, indices, indptr), shape=(len(f), len(f)))
    u[:] = scipy.sparse.linalg.cg(A, f, x0=u)[0]


@pytest.mark.parametrize("kernel, message, where", [
    (data_written_while_factorised,
     r"'data' is written while 'lu' \(line \d+\) still uses a copy", "data[0] = 2.0"),
    (data_written_by_a_call_while_factorised,
     r"'data' is written while 'lu' \(line \d+\) still uses a copy", "scaled_first(data)"),
    (data_written_by_a_call_in_a_loop_while_converted,
     r"'data' is written while 'B' \(line \d+\) still uses a copy", "scaled_first(data[1:])"),
    (factorised_in_a_branch,
     r"'lu' is a copy made at line \d+ .* use it only after it, in the same block",
     "u[:] = lu.solve(f)"),
    (krylov_without_its_info, r"cg returns \(x, info\): write 'x, info = cg", "cg(A, f)"),
    (krylov_from_a_guess, r"adsrc's cg starts from zero", "x0=u"),
])
def test_scipy_spelling_that_would_differ_from_scipy_is_refused_at_its_line(kernel, message,
                                                                            where):
    args = [*_csr(sp.csc_matrix(_poisson_1d(4))), np.ones(4), np.zeros(4)]
    if kernel is factorised_in_a_branch:
        args.append(1)
    with pytest.raises(adsrc.UnsupportedError, match=message) as error:
        adsrc.differentiate(kernel, wrt="data", outputs="u").adjoint(*args, u_bar=np.ones(4))
    assert error.value.filename.endswith("test_rules.py") and where in error.value.source_line
    assert args[0][0] == _csr(sp.csc_matrix(_poisson_1d(4)))[0][0]      # nothing ran


def product_with_more_columns_declared(data, indices, indptr, x, u):
    A = scipy.sparse.csr_matrix((data, indices, indptr), shape=(len(u), len(x) + 1))
    u[:] = A @ x


def csc_product_with_more_rows_declared(data, indices, indptr, x, u):
    A = scipy.sparse.csc_matrix((data, indices, indptr), shape=(len(u) + 1, len(x)))
    u[:] = A.T @ x


def coo_product_with_more_columns_declared(data, indices, indptr, x, u):
    A = scipy.sparse.coo_matrix((data, (indices, indices)), shape=(len(u), len(x) + 1))
    u[:] = A @ x


def solve_of_a_matrix_declared_rectangular(data, indices, indptr, f, u):
    A = scipy.sparse.csr_matrix((data, indices, indptr), shape=(len(f), len(f) + 1))
    u[:] = scipy.sparse.linalg.spsolve(A, f)


def factorisation_of_a_matrix_declared_rectangular(data, indices, indptr, f, u):
    A = scipy.sparse.csr_matrix((data, indices, indptr), shape=(len(f), len(f) + 1))
    lu = scipy.sparse.linalg.splu(A)
    u[:] = lu.solve(f)


def coo_solve_of_a_larger_matrix(data, indices, indptr, f, u):
    n = len(f) + 1
    A = scipy.sparse.coo_matrix((data, (indices, indices)), shape=(n, n))
    u[:] = scipy.sparse.linalg.spsolve(A, f)


def shape_bound_again_to_what_scipy_refuses(data, indices, indptr, x, u):
    m = len(x) + 1
    A = scipy.sparse.csr_matrix((data, indices, indptr), shape=(len(u), m))
    m = len(x)                  # A keeps its len(x) + 1 columns: A @ x is refused
    u[:] = A @ x


@pytest.mark.parametrize("kernel", [
    product_with_more_columns_declared, csc_product_with_more_rows_declared,
    coo_product_with_more_columns_declared, solve_of_a_matrix_declared_rectangular,
    factorisation_of_a_matrix_declared_rectangular, coo_solve_of_a_larger_matrix,
    shape_bound_again_to_what_scipy_refuses])
def test_a_declared_shape_that_scipy_refuses_is_refused(kernel):
    """The rewritten uses take sizes from the arrays: a shape SciPy refuses gave a product or
    a solve of the size the arrays imply (a 4 x 5 matrix times 4 values), on both backends."""
    def arguments():
        return [*_csr(_poisson_1d(4)), np.ones(4), np.zeros(4)]

    with pytest.raises(ValueError):             # SciPy's refusal, the reference
        kernel(*arguments())
    args = arguments()
    with pytest.raises((AssertionError, ValueError)):
        adsrc.differentiate(kernel, wrt="data", outputs="u").adjoint(*args, u_bar=np.ones(4))
    assert np.array_equal(args[4], np.zeros(4))


def solve_of_a_longer_right_hand_side(data, indices, indptr, f, u):
    A = scipy.sparse.csr_matrix((data, indices, indptr), shape=(len(u), len(u)))
    v = scipy.sparse.linalg.spsolve(A, f)
    u[:] = v[:len(u)]


def factorised_solve_of_a_longer_right_hand_side(data, indices, indptr, f, u):
    A = scipy.sparse.csc_matrix((data, indices, indptr), shape=(len(u), len(u)))
    lu = scipy.sparse.linalg.splu(A)
    v = lu.solve(f)
    u[:] = v[:len(u)]


def transposed_product_of_a_longer_vector(data, indices, indptr, f, u):
    A = scipy.sparse.csr_matrix((data, indices, indptr), shape=(len(u), len(u)))
    v = A.T @ f
    u[:] = v[:len(u)]


@pytest.mark.parametrize("kernel, message", [
    (solve_of_a_longer_right_hand_side, "the right-hand side 'f' of a solve must have as many "
     "entries as the matrix has rows"),
    (factorised_solve_of_a_longer_right_hand_side, "the right-hand side 'f' of a solve must "
     "have as many entries as the matrix has rows"),
    (transposed_product_of_a_longer_vector, "dimension mismatch")])
def test_a_vector_of_the_wrong_length_is_named(kernel, message, backend):
    """A solve's right-hand side or a transposed product's vector one entry too long: SciPy
    refuses them; adsrc took the matrix's size from the vector and failed on the index pointer
    ('index pointer size 6 should be 5'), a cause the kernel does not show."""
    args = [*_csr(_poisson_1d(4)), np.ones(5), np.zeros(4)]
    with pytest.raises(ValueError):             # SciPy's refusal, the reference
        kernel(*[np.copy(arg) for arg in args])
    with pytest.raises((AssertionError, ValueError), match=message):
        adsrc.differentiate(kernel, wrt="data", outputs="u").adjoint(*args, u_bar=np.ones(4))
    assert np.array_equal(args[4], np.zeros(4))


def shape_bound_again_after_the_matrix(data, indices, indptr, x, u):
    n = len(u)
    m = len(x)
    A = scipy.sparse.csr_matrix((data, indices, indptr), shape=(n, m))
    K = scipy.sparse.coo_matrix((data, (indices, indices)), shape=(m, m))
    m = m - 1                   # SciPy read the shapes above: A and K keep their sizes
    n = 1
    u[:] = A @ x
    u[:] = u + A.T @ x + K @ x + n * x
    u[:] = scipy.sparse.linalg.spsolve(A, u)


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_a_shape_is_read_where_the_matrix_is_built(backend):
    """SciPy reads a matrix's shape once, where it builds it; the rewritten uses read the
    shape's expressions where they run, so binding its names again in between changed the
    matrix: a valid kernel raised, and one SciPy refuses computed (the refusal above).  The
    values against SciPy's, the gradient against finite differences and the dot-product
    test."""
    def arguments():
        return [*_csr(_poisson_1d(4)), np.linspace(1.0, 2.0, 4), np.zeros(4)]

    expected = arguments()
    shape_bound_again_after_the_matrix(*expected)
    f = adsrc.differentiate(shape_bound_again_after_the_matrix, wrt=("data", "x"),
                            outputs="u", backend=backend)
    args = arguments()
    f.primal(*args)
    np.testing.assert_allclose(args[4], expected[4], rtol=1e-13)
    adsrc.check_grads(shape_bound_again_after_the_matrix, arguments(), ("data", "x"), ("u",),
                      backend=backend)
    _dot_product_test(shape_bound_again_after_the_matrix, arguments(), ("data", "x"), ("u",))


def read_while_factorised(data, indices, indptr, f, u):
    n = len(f)
    A = scipy.sparse.csc_matrix((data, indices, indptr), shape=(n, n))
    lu = scipy.sparse.linalg.splu(A)
    scale = np.dot(data, data)
    u[:] = scale * lu.solve(f)


@pytest.mark.parametrize("case", ["qr_rebinding_its_argument", "qr_subspace_iteration"])
def test_a_factor_bound_to_the_name_factored_leaves_the_other_factor_of_the_array_passed(case):
    """Python evaluates np.linalg.qr(A) once, then binds A and R: the value is Python's (it
    was the R of Q, on both backends; its gradients are checked in the CASES tests)."""
    kernel, make_args, wrt, _ = CASES[case]
    value, _ = adsrc.value_and_grad(kernel, wrt=wrt)(*make_args())
    assert value == pytest.approx(kernel(*make_args()), rel=1e-13)


def qr_bound_twice(A):
    A, A = np.linalg.qr(A)
    return np.sum(A)


def test_factors_bound_to_one_name_are_refused():
    with pytest.raises(adsrc.UnsupportedError, match="assign them to distinct names"):
        adsrc.grad(qr_bound_twice, wrt="A")(np.eye(3))


def test_a_call_that_only_reads_the_arrays_of_a_factorised_matrix_is_taken():
    """Only a call of a user kernel may write its arguments: a library call reading the
    values between the factorisation and its use is no change of them.  Its gradient against
    finite differences and the dot-product test."""
    args = [*_csr(sp.csc_matrix(_poisson_1d(4))), np.linspace(1.0, 2.0, 4), np.zeros(4)]
    adsrc.check_grads(read_while_factorised, args, ("data", "f"), ("u",), rtol=1e-7)
    _dot_product_test(read_while_factorised, args, ("data", "f"), ("u",))


def test_one_factorisation_serves_every_solve_with_the_same_matrix(monkeypatch):
    """Solves with an unchanged matrix, in a loop, through splu or factorized, in both sweeps,
    factorise it once; a changed matrix is factorised again (its gradient is checked above)."""
    factorisations = []
    splu = scipy.sparse.linalg.splu

    def counting_splu(*args, **kwargs):
        factorisations.append(1)
        return splu(*args, **kwargs)

    monkeypatch.setattr(scipy.sparse.linalg, "splu", counting_splu)
    make_args = CASES["factorised_steps"][1]
    args = make_args()
    args[0] = args[0] * 1.5                 # not the matrix an earlier test factorised last
    adsrc.value_and_grad(rk.factorised_steps, wrt=("data", "f"))(*args)
    assert len(factorisations) == 1
    args = [*_csr(_poisson_1d(6, shift=3.5)), np.linspace(1, 2, 6), np.zeros(6), 4]
    adsrc.value_and_grad(rk.solves_in_a_loop, wrt="data")(*args)
    assert len(factorisations) == 2
    refactorised = CASES["refactorised_steps"][1]()
    adsrc.value_and_grad(rk.refactorised_steps, wrt="data")(*refactorised)
    assert len(factorisations) == 2 + 3     # the values change at every step


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_what_a_forward_part_saves_is_kept_from_later_writes(backend):
    """A named tuple stays one (the backward part read 'saved.x' of the plain tuple it was
    rebuilt as, AttributeError), with x as the call saw it: 9 x^2, and finite differences.
    Another object holding x is refused: adsrc cannot copy it, and the gradient came out
    with x as the kernel left it (3 times too large a part)."""
    x = np.array([0.7, 1.1, 0.9, 1.3])
    got = adsrc.grad(rk.squared_then_scaled, wrt="x", backend=backend)(x.copy())
    np.testing.assert_allclose(got, 9.0 * x * x, rtol=1e-14)
    adsrc.check_grads(rk.squared_then_scaled, [x.copy()], "x", backend=backend)
    with pytest.raises(adsrc.AdsrcError, match="saved a SimpleNamespace holding an array the "
                                               "kernel may overwrite"):
        adsrc.grad(rk.namespace_then_scaled, wrt="x", backend=backend)(x.copy())


def test_a_rule_for_a_function_adsrc_differentiates_itself_is_refused():
    with pytest.raises(adsrc.AdsrcError, match="numpy.exp is differentiated by adsrc itself"):
        adsrc.rule(np.exp, returns="float64[:]")(lambda x: (np.exp(x), x))


def test_a_users_rule_declared_before_the_built_in_ones_load_wins():
    """The built-in rules load on first use, and loaded after a user's rule for the same
    function (np.linalg.norm, here ten times the gradient) they replaced it: in a new
    process, declared first thing, the user's rule is the one used."""
    script = textwrap.dedent('''
        import numpy as np
        import adsrc
        from tests import rule_kernels_norm as kernels

        @adsrc.rule(np.linalg.norm, returns="float")
        def norm_forward(x):
            return np.linalg.norm(x), x

        @norm_forward.backward
        def _(x, s_bar):
            return 10.0 * s_bar * x / np.linalg.norm(x),

        print([float(v) for v in adsrc.grad(kernels.norm_of, wrt="x", backend="python")(
            np.array([3.0, 4.0]))])
    ''')
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=pathlib.Path(__file__).parent.parent, timeout=600)
    assert done.returncode == 0, done.stderr
    assert [float(v) for v in done.stdout.strip()[1:-1].split(",")] == [6.0, 8.0]


def test_a_missing_rule_is_named():
    with pytest.raises(adsrc.UnsupportedError, match="no derivative rule for numpy.linalg.det"):
        adsrc.differentiate(unknown_library_call, wrt="A", outputs="x").adjoint(
            np.eye(3), np.zeros(3), x_bar=np.ones(3))


def halved(x):
    return 0.5 * x


@adsrc.rule(halved, returns="float64[:]")
def halved_forward(x):          # a rule without backward_tangent
    return halved(x), ()


@halved_forward.backward
def _halved_backward(saved, y_bar):
    return 0.5 * y_bar,


@halved_forward.tangent
def _halved_tangent(x, x_dot):
    return halved(x), 0.5 * x_dot


def halved_energy(x, y):
    y[:] = halved(x)
    return np.dot(y, y)


def test_hessian_vector_products_need_the_tangent_of_the_backward_part():
    with pytest.raises(adsrc.UnsupportedError,
                       match=r"rule of \S*test_rules\.halved need its backward_tangent part"):
        adsrc.hvp(halved_energy, wrt="x")(np.ones(5), np.ones(5), np.zeros(5))


def thirded(x):
    return x / 3.0


@adsrc.rule(thirded, returns="float64[:]")
def thirded_forward(x):          # a rule without tangent
    return thirded(x), ()


@thirded_forward.backward
def _thirded_backward(saved, y_bar):
    return y_bar / 3.0,


def thirded_in_place(x, y):
    y[:] = 2.0 * y
    y[:] = thirded(x)
    return np.dot(y, y)


def test_forward_modes_need_the_tangent_part_before_anything_runs():
    """The missing part was found when the rule's tangent was called, after the code before
    it had written y."""
    x, y = np.ones(5), np.ones(5)
    with pytest.raises(adsrc.UnsupportedError,
                       match=r"forward mode through the derivative rule of \S*thirded needs its "
                             r"tangent part"):
        adsrc.jvp(thirded_in_place, wrt="x")(x, y, x_dot=np.ones(5))
    with pytest.raises(adsrc.UnsupportedError, match=r"need its tangent part"):
        adsrc.hvp(thirded_in_place, wrt="x")(x, y, x_dot=np.ones(5))
    assert np.all(y == 1.0)
    adsrc.check_grads(thirded_in_place, [x, y], "x")       # reverse mode needs no tangent


def wrong_shape(x):
    return x[:2]


@adsrc.rule(wrong_shape, returns="float64[:]")
def wrong_shape_forward(x):
    return np.zeros(len(x)), ()


@wrong_shape_forward.backward
def _wrong_shape_backward(saved, y_bar):
    return np.ones(3),


def uses_wrong_shape(x, y):
    y[:] = wrong_shape(x)


def test_a_rule_returning_a_wrong_shape_is_an_error():
    with pytest.raises(adsrc.AdsrcError, match="shape"):
        adsrc.differentiate(uses_wrong_shape, wrt="x", outputs="y").adjoint(
            np.ones(4), np.zeros(4), y_bar=np.ones(4))


def test_stacks_of_directions_go_one_at_a_time_through_rules():
    """Vector mode cannot carry k directions through a rule's call yet: f.tangent with
    stacks, adsrc.jacobian in forward mode and HessianOperator.matmat run one direction at a
    time, with the results of the single-direction runs."""
    args = _dense_args()
    f = adsrc.differentiate(rk.dense_solve_energy, wrt=("A", "b"), outputs=("return",))
    rng = np.random.default_rng(11)
    A_dots, b_dots = rng.standard_normal((3, 5, 5)), rng.standard_normal((3, 5))
    (stacked,) = f.tangent(*_copies(args), A_dot=A_dots, b_dot=b_dots)
    singles = [f.tangent(*_copies(args), A_dot=A_dots[d].copy(), b_dot=b_dots[d].copy())[0]
               for d in range(3)]
    np.testing.assert_allclose(stacked, singles, rtol=1e-13)
    forward = adsrc.jacobian(rk.dense_solve_energy, wrt="b", outputs="return",
                             mode="forward")(*args)
    reverse = adsrc.jacobian(rk.dense_solve_energy, wrt="b", outputs="return",
                             mode="reverse")(*args)
    np.testing.assert_allclose(forward, reverse, rtol=1e-12)
    hessian = adsrc.hessian_operator(rk.compliance, *CASES["sparse_solve"][1](), wrt="f")
    directions = rng.standard_normal((7, 2))
    np.testing.assert_allclose(hessian.matmat(directions),
                               np.column_stack([hessian.matvec(d) for d in directions.T]),
                               rtol=1e-12)
