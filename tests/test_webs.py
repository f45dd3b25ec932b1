"""Splitting the webs of scalar locals (adsrc.normalize.webs), on tests/web_kernels.py.

* The normalised kernel is exactly its hand-renamed twin: the independent webs get their own
  names (``t_2``, ...), and a web that must stay whole (carried to the next iteration, read
  after its loop, joined after an if/else, through a while loop or past a break) keeps one
  name.  Names passed to a user kernel, returned, or whose split would change a type are left
  as they are.
* The tape: a kernel records exactly what adsrc records for its hand-renamed twin.  (That is
  less than with one name when a web becomes recomputable or stops being recorded, as in
  two_loops; when every web is recorded anyway, each new name costs one value more in the
  frame saved at the end of the forward sweep.)
* Derivatives, on both backends: ``adsrc.check_grads`` for every kernel; tangents (one
  direction and vector mode) against adjoints, and H v, for the split ones.
"""

import inspect
import textwrap

import gast
import numpy as np
import pytest

import adsrc
import web_kernels as K
from adsrc.runtime.arguments import signature_of

N = 9

# kernel -> (wrt, outputs); kernels with a twin K.<name>_split are split, the others not
CASES = {
    "two_loops": (("x", "y"), ("y",)),
    "three_uses": (("x", "y"), ("y",)),
    "loop_carried": (("x", "y"), ("y",)),
    "read_after_loop": (("x", "y"), ("y",)),
    "if_else_join": (("x", "y"), ("y",)),
    "while_loops": (("x", "y"), ("y",)),
    "break_carries": (("x", "y"), ("y",)),
    "name_taken": (("x", "y"), ("y",)),
    "int_web": (("x", "y"), ("y",)),
    "passed_to_kernel": (("x", "y"), ("y",)),
    "returned": (("x", "y"), ("return",)),
    "energy": (("x",), ("return",)),
}
SPLIT = sorted(name for name in CASES if hasattr(K, name + "_split"))


def _copies(args):
    return [np.copy(a) if isinstance(a, np.ndarray) else a for a in args]


def _args_of(name):
    return (_args()[0], N) if name == "energy" else _args()


def _args():
    """Values away from the kinks: no x[i] near 0 (if_else_join) or 0.9 (break_carries breaks
    at the 0.95), no x[k]**2 + y[k] near 1.2 (while_loops stops after k = 4)."""
    x = np.array([0.3, -0.6, 0.45, 0.7, 0.95, -0.2, 0.5, -0.4, 0.6])
    y = np.linspace(0.2, 0.9, N)
    return x, y, N


def _normalised(kernel, wrt, outputs, args):
    """The kernel's body after normalisation, as text."""
    f = adsrc.differentiate(kernel, wrt=wrt, outputs=outputs, backend="python")
    _, spec = f.specialise(signature_of(kernel.__name__, f.params, args))
    return "\n".join(gast.unparse(stmt) for stmt in spec.tree.body)


def _written(kernel):
    """The kernel's body as written (docstring left out), as text; a returned expression and
    a user call's result as normalisation spells them."""
    body = gast.parse(textwrap.dedent(inspect.getsource(kernel))).body[0].body
    if isinstance(body[0], gast.Expr) and isinstance(body[0].value, gast.Constant):
        body = body[1:]
    module = gast.Module(body=body, type_ignores=[])
    _CallResults().visit(module)
    body = gast.fix_missing_locations(module).body
    text = "\n".join(gast.unparse(stmt) for stmt in body)
    return text.replace("return v", "_ret = v\nreturn _ret").replace("return e",
                                                                      "_ret = e\nreturn _ret")


class _CallResults(gast.NodeTransformer):
    """``u = halve(t)`` as ``_t0 = halve(t)`` then ``u = _t0``: normalisation sends a user
    call's result to a temporary of its own (the twins' calls take names, so no other
    temporary comes first)."""

    def __init__(self):
        self.count = 0

    def visit_Assign(self, stmt):
        call = stmt.value
        if not (isinstance(call, gast.Call) and isinstance(call.func, gast.Name)
                and hasattr(K, call.func.id)):
            return stmt
        temp = f"_t{self.count}"
        self.count += 1
        result = gast.Assign(targets=[gast.Name(temp, gast.Store(), None, None)], value=call,
                             type_comment=None)
        stmt.value = gast.Name(temp, gast.Load(), None, None)
        return [result, stmt]


@pytest.mark.parametrize("name", sorted(CASES))
def test_normalised_kernel_is_its_hand_renamed_twin(name):
    wrt, outputs = CASES[name]
    twin = getattr(K, name + "_split", getattr(K, name))
    got = _normalised(getattr(K, name), wrt, outputs, _args_of(name))
    assert got == _written(twin)


@pytest.mark.parametrize("name", SPLIT)
def test_tape_is_that_of_the_hand_renamed_twin(name, backend):
    wrt, outputs = CASES[name]
    pushed = []
    for kernel in (getattr(K, name), getattr(K, name + "_split")):
        f = adsrc.differentiate(kernel, wrt=wrt, outputs=outputs)
        bars = {"y_bar": np.ones(N)} if "y" in outputs else {}
        f.adjoint(*_args_of(name), **bars)
        pushed.append(f.adjoint.last_tape_stats.floats_pushed)
    assert pushed[0] == pushed[1]


def test_reused_temporary_is_recomputed_in_the_first_loop():
    """Split, the first loop's ``t`` is recomputed, and the second loop records its ``t_2``
    once per iteration (it reads y, which that loop overwrites) and once in the frame."""
    f = adsrc.differentiate(K.two_loops, wrt=("x",), outputs=("y",), backend="python")
    f.adjoint(*_args(), y_bar=np.ones(N))
    assert f.adjoint.last_tape_stats.floats_pushed == N + 1


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_grads(name, backend):
    wrt, outputs = CASES[name]
    adsrc.check_grads(getattr(K, name), _args_of(name), wrt=wrt, outputs=outputs)


@pytest.mark.parametrize("name", SPLIT)
def test_tangents_match_adjoints(name, backend):
    """``<w, J v> = <J^T w, v>`` with the tangent, and vector mode (two directions at once)
    gives the tangents one direction at a time does."""
    wrt, outputs = CASES[name]
    f = adsrc.differentiate(getattr(K, name), wrt=wrt, outputs=outputs)
    rng = np.random.default_rng(5)
    args = _args_of(name)
    dots = {arg + "_dot": rng.standard_normal((2, N)) for arg in wrt}
    w = rng.standard_normal(N) if "y" in outputs else 1.0
    stacked = f.tangent(*_copies(args), **{k: np.copy(v) for k, v in dots.items()})
    for d in range(2):
        tangent, = f.tangent(*_copies(args),
                             **{k: np.copy(v[d]) for k, v in dots.items()})
        np.testing.assert_allclose(stacked[0][d], tangent, rtol=1e-12, atol=1e-14)
        bars = {"y_bar": np.copy(w)} if "y" in outputs else {"out_bar": w}
        grads = f.adjoint(*_copies(args), **bars)
        forward = float(np.sum(w * tangent))
        reverse = sum(float(np.dot(g, dots[arg + "_dot"][d])) for g, arg in zip(grads, wrt))
        assert reverse == pytest.approx(forward, rel=1e-11)


def test_hvp_of_a_split_kernel(backend):
    """H v of a scalar kernel with a split temporary, against central differences of the
    gradient."""
    x, n = _args_of("energy")
    v = np.random.default_rng(6).standard_normal(N)
    hv = adsrc.hvp(K.energy, wrt="x")(np.copy(x), v, n)
    grad = adsrc.grad(K.energy, wrt="x")
    h = 1e-4
    fd = (-grad(x + 2 * h * v, n) + 8 * grad(x + h * v, n) - 8 * grad(x - h * v, n)
          + grad(x - 2 * h * v, n)) / (12 * h)
    np.testing.assert_allclose(hv, fd, rtol=1e-6, atol=1e-8)


def test_generated_code_keeps_the_users_lines():
    """Comments name the user's line as written; only the code uses the new names."""
    f = adsrc.differentiate(K.two_loops, wrt=("x",), outputs=("y",), backend="python")
    text = f.source("adjoint", args=_args())
    assert "t_2 = y[i] + x[i]" in text
    assert "# line 16: t = y[i] + x[i]" in text
