"""Vector mode: k directions in one sweep (``f.tangent`` with stacks of directions,
``HessianOperator.matmat``, ``adsrc.hvp`` with a stack of vectors).

Checked against independent computations:

* on the whole corpus, in both backends: the vector tangent equals k single-direction tangents
  (of the Python backend, the reference) direction by direction, and passes the dot-product
  test ``<J V e_j, w> == <V e_j, J^T w>`` against the adjoint;
* vector H V equals k single H v and fourth-order finite differences of the gradient;
* bad stacks are refused before anything runs.

Only the vector modules are compiled per case (the references run on the Python backend), to
keep the Cython side of this file to one build per kernel.
"""

import functools
from types import SimpleNamespace

import gast
import numpy as np
import pytest

import adsrc
from adsrc.analyses.types import FLOAT, array
from adsrc.backends import python as python_backend
from adsrc.transformations.vector import vectorize
import hvp_kernels as HK
import snapshot_kernels as SK
from corpus import kernels as K
from corpus.hand_adjoints import CASES
from corpus.problems import poisson2d_csr

BACKENDS = ("python", "cython")
DIRECTIONS = 3
FD_STEP = 1e-4


def _copies(args):
    return [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]


def _stacks(case, args, rng, k):
    """A stack of k random directions per wrt argument: shape (k,) + its shape."""
    return {param: rng.standard_normal((k,) + np.shape(args[case.arg_index(param)]))
            for param in case.wrt}


@functools.lru_cache(maxsize=None)
def _corpus_reference(name):
    """Arguments, stacks of directions, output weights ``w``, and the references from the
    Python backend: ``J^T w`` (adjoint) and the single-direction tangents of every direction.
    Computed once per case, shared by both backends."""
    case = next(case for case in CASES if case.name == name)
    rng = np.random.default_rng(51)
    args = case.make_args(rng, np.int32)
    stacks = _stacks(case, args, rng, DIRECTIONS)
    reference = adsrc.differentiate(case.kernel, wrt=case.wrt, outputs=case.outputs,
                                    backend="python")
    w = {out: (0.7 if out == "return" else
               rng.standard_normal(np.shape(args[case.arg_index(out)])))
         for out in case.outputs}
    bars = {out + "_bar": w[out].copy() for out in case.outputs if out != "return"}
    if "return" in case.outputs:
        bars["out_bar"] = w["return"]
    adjoints = dict(zip(case.wrt, reference.adjoint(*_copies(args), **bars)))
    singles = [reference.tangent(*_copies(args), **{param + "_dot": stack[d].copy()
                                                    for param, stack in stacks.items()})
               for d in range(DIRECTIONS)]
    return args, stacks, w, adjoints, singles


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_corpus_vector_tangent(case, backend):
    args, stacks, w, adjoints, singles = _corpus_reference(case.name)
    given = {param + "_dot": stack.copy() for param, stack in stacks.items()}
    vector = adsrc.differentiate(case.kernel, wrt=case.wrt, outputs=case.outputs,
                                 backend=backend)
    moved = _copies(args)
    got = vector.tangent(*moved, **given)
    # the arguments end as the primal leaves them
    primal = _copies(args)
    case.kernel(*primal)
    for after, want in zip(moved, primal):
        if isinstance(want, np.ndarray):
            np.testing.assert_allclose(after, want, rtol=1e-13, atol=1e-15)
    # the inputs' stacks are left alone; a mutated output's stack holds its tangents
    for param, stack in stacks.items():
        if param not in case.outputs:
            np.testing.assert_array_equal(given[param + "_dot"], stack)
        else:
            assert got[case.outputs.index(param)] is given[param + "_dot"]

    for d, single in enumerate(singles):
        for out, column, want in zip(case.outputs, got, single):
            assert np.shape(column) == (DIRECTIONS,) + np.shape(want)
            scale = max(1.0, float(np.max(np.abs(want))))
            np.testing.assert_allclose(column[d], want, rtol=1e-12, atol=1e-13 * scale,
                                       err_msg=f"{out}, direction {d}")
        forward = sum(float(np.sum(w[out] * column[d])) for out, column in zip(case.outputs, got))
        reverse = sum(float(np.sum(adjoints[param] * stacks[param][d])) for param in case.wrt)
        assert forward == pytest.approx(reverse, rel=1e-10)
        assert abs(forward) > 1e-6


def _gauss_seidel(backend, wrt=("x", "b")):
    m = 3
    indptr, indices, data = poisson2d_csr(m)
    rng = np.random.default_rng(52)
    x, b = rng.uniform(-1, 1, m * m), rng.uniform(-1, 1, m * m)
    f = adsrc.differentiate(K.gauss_seidel, wrt=wrt, outputs=("x",), backend=backend)
    return f, (indptr, indices, data, x, b, 2), rng


def test_one_direction_and_defaults():
    """k = 1 gives the single-direction tangent; a direction left out is zero, and the
    output's tangents come back in a new (k,) + shape array."""
    f, args, rng = _gauss_seidel("python")
    b_dot = rng.standard_normal((1, 9))
    (single,) = f.tangent(*_copies(args), b_dot=b_dot[0].copy())
    (stacked,) = f.tangent(*_copies(args), b_dot=b_dot)
    assert stacked.shape == (1, 9) and stacked.flags.c_contiguous
    np.testing.assert_allclose(stacked[0], single, rtol=1e-14)


def test_vector_source_is_readable_and_inactive_values_get_no_tangent():
    m = 3
    indptr, indices, data = poisson2d_csr(m)
    f = adsrc.differentiate(K.gauss_seidel, wrt=("b",), outputs=("x",), backend="python")
    f.tangent(indptr, indices, data, np.zeros(m * m), np.ones(m * m), 1,
              b_dot=np.ones((2, m * m)))
    source = f.source("vector_tangent")
    assert "for _d in range(_k):" in source and "b_dot[i * _k + _d]" in source
    assert "acc_dot = np.zeros(_k)" in source
    for inactive in ("data_dot", "diag_dot", "indices_dot", "j_dot", "k_dot", "n_dot"):
        assert inactive not in source
    assert "for _d" not in f.source("tangent")           # the scalar tangent is unchanged


@pytest.mark.parametrize("dots, message", [
    ({"b_dot": np.ones((2, 9)), "x_dot": np.ones((3, 9))}, "same number"),   # mismatched k
    ({"b_dot": np.ones((2, 9)), "x_dot": np.ones(9)}, "stacks"),              # mixed
    ({"b_dot": np.ones((2, 8))}, r"b_dot has shape \(2, 8\), but a stack of k directions "
                                 r"of 'b' has shape \(k,\) \+ \(9,\)"),
    ({"b_dot": np.ones((2, 9), dtype=np.float32)}, "float64"),
    ({"b_dot": np.ones((0, 9))}, "at least one"),
    ({"data_dot": np.ones((2, 33))}, "data_dot"),                             # not in wrt
    ({"b_dot": [[1.0] * 9] * 2}, "NumPy array"),
])
def test_bad_stacks_are_refused_before_anything_runs(dots, message):
    f, args, _ = _gauss_seidel("python")
    x_before = args[3].copy()
    given = {key: (value.copy() if isinstance(value, np.ndarray) else value)
             for key, value in dots.items()}
    with pytest.raises(adsrc.ArgumentError, match=message):
        f.tangent(*args, **given)
    np.testing.assert_array_equal(args[3], x_before)
    for key, value in dots.items():
        np.testing.assert_array_equal(given[key], value)


def test_a_stack_sharing_memory_with_a_written_argument_is_refused():
    f, args, _ = _gauss_seidel("python")
    x = args[3]
    stack = np.stack([x, x])
    args = list(args)
    args[3] = stack[0]
    before = stack.copy()
    with pytest.raises(adsrc.ArgumentError, match="share memory"):
        f.tangent(*args, x_dot=stack)
    np.testing.assert_array_equal(stack, before)


def solve_into(A, b, u):
    u[:] = np.linalg.solve(A, b)
    return np.dot(u, u)


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_stacks_of_a_kernel_run_one_direction_at_a_time_are_checked_first(backend):
    """A kernel calling a derivative rule runs its k directions one at a time: the stacks get
    the checks of a vector-mode call before the first run, which wrote u before (a read-only
    stack for u, or one sharing memory with b, was found only then, or never)."""
    f = adsrc.differentiate(solve_into, wrt=("b", "u"), outputs="u", backend=backend)
    A = np.array([[3.0, 1.0], [0.5, 2.0]])
    stack = np.array([[1.0, 2.0], [0.0, 1.0]])
    read_only = stack.copy()
    read_only.flags.writeable = False
    for b, u_dot, message in ((np.ones(2), read_only, "u_dot must be writeable"),
                              (stack[0], stack, "'b' and 'u_dot' share memory")):
        u, before = np.zeros(2), (b.copy(), u_dot.copy())
        with pytest.raises(adsrc.ArgumentError, match=message):
            f.tangent(A, b, u, b_dot=np.eye(2), u_dot=u_dot)
        np.testing.assert_array_equal(u, np.zeros(2))
        np.testing.assert_array_equal(b, before[0])
        np.testing.assert_array_equal(u_dot, before[1])
    tangents, = f.tangent(A, np.ones(2), np.zeros(2), b_dot=np.eye(2))
    np.testing.assert_allclose(tangents, np.linalg.inv(A).T, rtol=1e-14)     # du/db_j = A^-1 e_j


@pytest.mark.parametrize("statement", [
    "_o = rule(x, x_dot)",              # a tangent passed to a call it does not know
    "y_dot = _o[1]",                    # a tangent set from an unknown value
    "(y, y_dot) = rule(x, x_dot)",
    "rule_into(y, y_dot, x, x_dot)",
])
def test_unknown_tangent_statements_are_refused_not_passed_through(statement):
    """Generated tangent code of a form the vector pass does not know (such as a derivative
    rule's call) is refused: passing it through unchanged would give wrong tangents."""
    spec = SimpleNamespace(env={"x": FLOAT, "y": FLOAT}, source=SimpleNamespace(name="kernel"))
    function = gast.parse(f"def kernel__tan(x, x_dot):\n    {statement}\n").body[0]
    with pytest.raises(adsrc.AdsrcError, match="vector mode"):
        vectorize([(spec, function)])


def test_merged_loops_over_the_directions_keep_each_directions_order():
    """Consecutive tangent statements share one loop over the directions, after the primal
    statements between them, except a primal statement that writes what a loop before it reads
    (``t`` here): that loop runs first.  The vector function, run on the Python backend, equals
    the scalar one direction by direction."""
    scalar_source = (
        "def kernel__tan(x, x_dot, t, t_dot):\n"
        "    s_dot = x[0] * x_dot[0] + x[0] * x_dot[0]\n"
        "    s = x[0] * x[0]\n"
        "    t_dot = t_dot + s * x_dot[1] + x[1] * s_dot + t * s_dot\n"
        "    t = t + s * x[1] + t * s\n"
        "    t_dot = t * t_dot + t * t_dot\n"
        "    t = t * t\n"
        "    return (t, t_dot)\n")
    spec = SimpleNamespace(env={"x": array("float64", 1), "s": FLOAT, "t": FLOAT},
                           source=SimpleNamespace(name="kernel"))
    [(_, function)] = vectorize([(spec, gast.parse(scalar_source).body[0])])
    source = python_backend.module_source("", [function])
    lines = [line.strip() for line in source.splitlines()]
    loops = [at for at, line in enumerate(lines) if line == "for _d in range(_k):"]
    # s_dot and the first t_dot share a loop, after s; the second t_dot reads the new t, and
    # the return's tangent the newest
    assert len(loops) == 3
    assert lines.index("s = x[0] * x[0]") < loops[0] < lines.index("t = t + s * x[1] + t * s") \
        < loops[1] < lines.index("t = t * t") < loops[2]
    vector = python_backend.load(source, "merged")["kernel__tan"]
    scalar = python_backend.load(scalar_source, "scalar")["kernel__tan"]
    rng = np.random.default_rng(55)
    x, x_dots, t_dots = rng.uniform(0.5, 1.5, 2), rng.standard_normal((3, 2)), \
        rng.standard_normal(3)
    out = np.zeros(3)
    (t,) = vector(x, np.ascontiguousarray(x_dots.T).reshape(-1), 0.7, t_dots.copy(), out, 3)
    for d in range(3):
        want_t, want_dot = scalar(x, x_dots[d], 0.7, t_dots[d])
        assert t == want_t
        assert out[d] == pytest.approx(want_dot, rel=1e-15)


# vector Hessian-vector products ------------------------------------------------------------

# name -> (kernel, wrt position, make(rng) -> args); smooth scalar kernels with loops,
# branches, a while loop, user calls returning scalars (the out-parameters of vector mode)
# and array copies
HVP_PROBLEMS = {
    "norm_cubed": (HK.norm_cubed, 0, lambda rng: (rng.uniform(0.5, 1.5, 7),)),
    "smoothed_energy": (HK.smoothed_energy, 0, lambda rng: (rng.uniform(-1, 1, 9), 0.1, 3)),
    "damped_oscillation": (HK.damped_oscillation, 0, lambda rng: (np.array([0.8, -0.6]), 0.3)),
    "calls_in_a_loop": (HK.calls_in_a_loop, 0, lambda rng: (rng.uniform(-1, 1, 6), 0.4)),
    "calls_in_a_loop[a]": (HK.calls_in_a_loop, 1, lambda rng: (rng.uniform(-1, 1, 6), 0.4)),
    # a local array copied whole each sweep: the reverse sweep reads the copies in place
    "relaxed_energy": (SK.relaxed_energy, 0, lambda rng: (rng.uniform(0.5, 1.0, 8), 0.3, 3)),
    "residual_loss": (next(c for c in CASES if c.name == "residual_loss").kernel, 3,
                      lambda rng: next(c for c in CASES if c.name == "residual_loss")
                      .make_args(rng, np.int32)),
}


def _with(args, position, v):
    out = list(args)
    out.insert(position + 1, v)
    return out


@functools.lru_cache(maxsize=None)
def _hvp_reference(name):
    """Arguments, a stack of 4 directions, and per direction the single H v (matvecs of the
    Python backend) and fourth-order central differences of the gradient.  Computed once per
    problem, shared by both backends."""
    kernel, position, make = HVP_PROBLEMS[name]
    rng = np.random.default_rng(53)
    args = make(rng)
    vs = rng.standard_normal((4,) + np.shape(args[position]))
    if vs.ndim == 2:
        matvec = adsrc.hessian_operator(kernel, *args, wrt=position, backend="python").matvec
    else:
        single = adsrc.hvp(kernel, wrt=position, backend="python")

        def matvec(v):
            return single(*_with(args, position, float(v)))
    grad = adsrc.grad(kernel, wrt=position, backend="python")

    def gradient_at(v, h):
        moved = _copies(args)
        moved[position] = moved[position] + h * v
        return np.asarray(grad(*moved))

    singles = [matvec(v) for v in vs]
    fds = [(-gradient_at(v, 2 * FD_STEP) + 8 * gradient_at(v, FD_STEP)
            - 8 * gradient_at(v, -FD_STEP) + gradient_at(v, -2 * FD_STEP)) / (12 * FD_STEP)
           for v in vs]
    return args, vs, singles, fds


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(HVP_PROBLEMS))
def test_vector_hvp_equals_matvecs_and_finite_differences(name, backend):
    kernel, position, _ = HVP_PROBLEMS[name]
    args, vs, singles, fds = _hvp_reference(name)
    args = _copies(args)
    before = _copies(args)
    if vs.ndim == 2:
        operator = adsrc.hessian_operator(kernel, *args, wrt=position, backend=backend)
        got = operator.matmat(vs.T).T          # the columns of matmat are the directions
    else:
        got = adsrc.hvp(kernel, wrt=position, backend=backend)(*_with(args, position, vs))
    assert got.shape == vs.shape
    for after, want in zip(args, before):
        np.testing.assert_array_equal(after, want)         # the arguments are left alone
    for hv, single, fd in zip(got, singles, fds):
        scale = max(float(np.max(np.abs(single))), 1e-3)
        np.testing.assert_allclose(hv, single, rtol=1e-12, atol=1e-13 * scale)
        np.testing.assert_allclose(hv, fd, rtol=1e-6, atol=1e-7 * scale)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, in_place", [("norm_cubed", True), ("smoothed_energy", False)])
def test_matmat_of_c_ordered_columns(name, in_place, backend):
    """The columns of a C-ordered (n, k) array are already the sweep's layout: used in place,
    without the copy into the operator's buffer, unless the kernel writes its point (then the
    sweep writes their tangents) or they are read-only; never modified, in every case."""
    kernel, position, _ = HVP_PROBLEMS[name]
    args, vs, singles, _ = _hvp_reference(name)
    columns = np.ascontiguousarray(vs.T)
    kept = columns.copy()
    operator = adsrc.hessian_operator(kernel, *_copies(args), wrt=position, backend=backend)
    got = operator.matmat(columns)
    assert (operator._second._directions is None) == in_place
    np.testing.assert_array_equal(columns, kept)
    columns.flags.writeable = False
    again = operator.matmat(columns)
    for d, single in enumerate(singles):
        scale = max(float(np.max(np.abs(single))), 1e-3)
        np.testing.assert_allclose(got[:, d], single, rtol=1e-12, atol=1e-13 * scale)
        np.testing.assert_array_equal(again[:, d], got[:, d])


def test_matmat_results_are_not_overwritten_by_the_next_product():
    """matmat reuses its buffer of directions between calls, never its results."""
    x = np.random.default_rng(54).uniform(0.5, 1.5, 7)
    operator = adsrc.hessian_operator(HK.norm_cubed, x, backend="python")
    first = operator.matmat(np.eye(7)[:, :3])
    kept = first.copy()
    operator.matmat(np.ones((7, 3)))
    np.testing.assert_array_equal(first, kept)
    np.testing.assert_allclose(first[:, 2], operator.matvec(np.eye(7)[:, 2]), rtol=1e-13)


def test_bad_hvp_stacks_are_refused():
    x = np.ones(5)
    with pytest.raises(adsrc.ArgumentError, match="shape"):
        adsrc.hvp(HK.norm_cubed, wrt="x", backend="python")(x, np.ones((2, 4)))
    np.testing.assert_array_equal(x, np.ones(5))


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_indices_of_a_second_axis_count_from_the_end_of_their_row(backend):
    """A[i, j - 1] at j = 0 is A[i, -1]: the stacked tangents and H V took A[i - 1, -1] (the
    flat tangent's index was wrapped, not the axis's), where single directions were right.
    Against single directions of the Python backend and finite differences."""
    rng = np.random.default_rng(54)
    A, V = rng.uniform(0.5, 1.5, (3, 4)), rng.standard_normal((3, 3, 4))
    f = adsrc.differentiate(HK.row_shifted_products, wrt="A", outputs=("B",), backend=backend)
    stacked = f.tangent(A.copy(), np.zeros((3, 4)), A_dot=V.copy())[0]
    single = adsrc.differentiate(HK.row_shifted_products, wrt="A", outputs=("B",),
                                 backend="python")

    def outputs(h, v):
        B = np.zeros((3, 4))
        HK.row_shifted_products(A + h * v, B)
        return B

    for got, v in zip(stacked, V):
        want = single.tangent(A.copy(), np.zeros((3, 4)), A_dot=v.copy())[0]
        np.testing.assert_allclose(got, want, rtol=1e-14)
        np.testing.assert_allclose(got, (outputs(1e-6, v) - outputs(-1e-6, v)) / 2e-6,
                                   rtol=1e-7)
    hvps = adsrc.hvp(HK.row_periodic_energy, wrt="A", backend=backend)(A, V)
    one = adsrc.hvp(HK.row_periodic_energy, wrt="A", backend="python")
    grad = adsrc.grad(HK.row_periodic_energy, wrt="A", backend="python")
    for got, v in zip(hvps, V):
        np.testing.assert_allclose(got, one(A, v), rtol=1e-13)
        fd = (np.asarray(grad(A + 1e-5 * v)) - np.asarray(grad(A - 1e-5 * v))) / 2e-5
        np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)
