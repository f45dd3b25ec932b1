"""adsrc against the corpus: every kernel of tests/corpus/kernels.py is
differentiated by adsrc and compared with the hand-written adjoints of
tests/corpus/hand_adjoints.py (themselves checked against finite differences
in test_hand_adjoints.py), with int32 and int64 index arrays.

Semantics tested are those of docs/API.md.
"""

import numpy as np
import pytest

import adsrc
from corpus.hand_adjoints import CASES
from corpus.problems import INT_DTYPES

# every test on both backends; the compiled one built as users' modules are (tests/conftest.py)
pytestmark = [pytest.mark.usefixtures("backend"), pytest.mark.shipping_flags]

RTOL = 1e-10


def _params():
    out = []
    for case in CASES:
        for dt in INT_DTYPES if case.uses_indices else (np.int64,):
            out.append(pytest.param(case, dt, id=f"{case.name}-{np.dtype(dt).name}"))
    return out


PARAMS = _params()


def _copy_args(args):
    return tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args)


def _copy_bars(bars):
    return {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for k, v in bars.items()}


def _assert_same_args(got, want, what):
    for i, (g, w) in enumerate(zip(got, want)):
        if isinstance(w, np.ndarray):
            assert isinstance(g, np.ndarray) and g.dtype == w.dtype and g.shape == w.shape, (what, i)
            if np.issubdtype(w.dtype, np.integer):
                np.testing.assert_array_equal(g, w, err_msg=f"{what}: argument {i}")
            else:
                np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14, err_msg=f"{what}: argument {i}")
        else:
            assert g == w, (what, i)


def _assert_grad(name, got, want):
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), f"{name}: expected an array, got {type(got)}"
        assert got.shape == want.shape and got.dtype == np.float64, name
        scale = float(np.max(np.abs(want))) if want.size else 0.0
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale, err_msg=name)
    else:
        assert isinstance(got, float), f"{name}: a scalar wrt must come back as a Python float, got {type(got)}"
        assert got == pytest.approx(want, rel=RTOL, abs=1e-300), name


def _mutated_outputs(case):
    return [o for o in case.outputs if o != "return"]


@pytest.mark.parametrize("case,int_dtype", PARAMS)
def test_check_grads(case, int_dtype):
    rng = np.random.default_rng(11)
    args = case.make_args(rng, int_dtype)
    before = _copy_args(args)
    report = adsrc.check_grads(case.kernel, args, wrt=case.wrt, outputs=case.outputs)
    assert report is not None
    for a0, a1 in zip(before, args):  # the caller's arrays are left as they were
        np.testing.assert_array_equal(a0, a1)


@pytest.mark.parametrize("case,int_dtype", PARAMS)
def test_adjoint_matches_hand_adjoint(case, int_dtype):
    rng = np.random.default_rng(22)
    args = case.make_args(rng, int_dtype)
    f = adsrc.differentiate(case.kernel, wrt=case.wrt, outputs=case.outputs)
    for trial in range(2):
        bars = case.make_bars(rng, args)
        want = case.hand(args, bars)

        args_adj, bars_adj = _copy_args(args), _copy_bars(bars)
        got = f.adjoint(*args_adj, **bars_adj)

        args_pri = _copy_args(args)
        case.kernel(*args_pri)
        # the adjoint leaves the arrays exactly as the primal does
        _assert_same_args(args_adj, args_pri, f"{case.name}: state after adjoint()")

        assert isinstance(got, tuple) and len(got) == len(case.wrt), type(got)
        for name, g, w in zip(case.wrt, got, want):
            _assert_grad(f"{case.name}: {name}_bar", g, w)
            if name in case.outputs:
                # an output array's bar comes back in place: the array passed in
                assert g is bars_adj[name + "_bar"], name


@pytest.mark.parametrize("case,int_dtype", PARAMS)
def test_primal_unchanged(case, int_dtype):
    rng = np.random.default_rng(33)
    args = case.make_args(rng, int_dtype)
    f = adsrc.differentiate(case.kernel, wrt=case.wrt, outputs=case.outputs)
    a1, a2 = _copy_args(args), _copy_args(args)
    r1 = f(*a1)
    r2 = case.kernel(*a2)
    assert r1 == r2
    _assert_same_args(a1, a2, f"{case.name}: primal call")


def _accumulating(case):
    """wrt arrays that are not outputs (their bars accumulate with +=)."""
    args = case.make_args(np.random.default_rng(0), np.int64)
    return [n for n in case.wrt if n not in case.outputs and isinstance(args[case.arg_index(n)], np.ndarray)]


ACCUMULATING_CASES = [p for p in PARAMS if _accumulating(p.values[0])]


@pytest.mark.parametrize("case,int_dtype", ACCUMULATING_CASES)
def test_bars_of_other_wrt_arrays_are_incremented(case, int_dtype):
    """A wrt array that is not an output: its bar, when passed, is
    incremented (+=) by the adjoint and returned (the same object)."""
    accumulating = _accumulating(case)
    rng = np.random.default_rng(44)
    args = case.make_args(rng, int_dtype)
    bars = case.make_bars(rng, args)
    want = dict(zip(case.wrt, case.hand(args, bars)))
    start = {n + "_bar": rng.standard_normal(np.shape(args[case.arg_index(n)])) for n in accumulating}
    passed = _copy_bars({**bars, **start})
    f = adsrc.differentiate(case.kernel, wrt=case.wrt, outputs=case.outputs)
    got = dict(zip(case.wrt, f.adjoint(*_copy_args(args), **passed)))
    for n in accumulating:
        assert got[n] is passed[n + "_bar"], n
        _assert_grad(f"{case.name}: {n}_bar (+=)", got[n], start[n + "_bar"] + want[n])


RETURN_CASES = [p for p in PARAMS if "return" in p.values[0].outputs]


@pytest.mark.parametrize("case,int_dtype", RETURN_CASES)
def test_grad_and_default_out_bar(case, int_dtype):
    """out_bar defaults to 1.0; adsrc.grad / value_and_grad differentiate the
    return value only (mutated arrays get a zero seed)."""
    rng = np.random.default_rng(55)
    args = case.make_args(rng, int_dtype)
    zero_seeds = {o + "_bar": np.zeros(np.shape(args[case.arg_index(o)])) for o in _mutated_outputs(case)}
    want = case.hand(args, {**zero_seeds, "out_bar": 1.0})

    f = adsrc.differentiate(case.kernel, wrt=case.wrt, outputs=case.outputs)
    got = f.adjoint(*_copy_args(args), **_copy_bars(zero_seeds))  # no out_bar: 1.0
    for name, g, w in zip(case.wrt, got, want):
        _assert_grad(f"{case.name}: adjoint default out_bar, {name}", g, w)

    got = adsrc.grad(case.kernel, wrt=case.wrt)(*_copy_args(args))
    assert isinstance(got, tuple) and len(got) == len(case.wrt)
    for name, g, w in zip(case.wrt, got, want):
        _assert_grad(f"{case.name}: grad, {name}", g, w)

    value, got = adsrc.value_and_grad(case.kernel, wrt=case.wrt)(*_copy_args(args))
    # np.dot / np.sum run as sequential loops in the forward sweep: equal to NumPy's pairwise
    # summation up to rounding in the last bits (documented in the README).
    assert value == pytest.approx(case.kernel(*_copy_args(args)), rel=1e-14, abs=0.0)
    for name, g, w in zip(case.wrt, got, want):
        _assert_grad(f"{case.name}: value_and_grad, {name}", g, w)

    single = adsrc.grad(case.kernel, wrt=case.wrt[0])(*_copy_args(args))
    _assert_grad(f"{case.name}: grad single wrt", single, want[0])


@pytest.mark.parametrize("case,int_dtype", [p for p in PARAMS if _mutated_outputs(p.values[0])])
def test_missing_output_bar_is_an_argument_error(case, int_dtype):
    outs = _mutated_outputs(case)
    rng = np.random.default_rng(66)
    args = case.make_args(rng, int_dtype)
    bars = case.make_bars(rng, args)
    del bars[outs[0] + "_bar"]
    f = adsrc.differentiate(case.kernel, wrt=case.wrt, outputs=case.outputs)
    a = _copy_args(args)
    with pytest.raises(adsrc.ArgumentError):
        f.adjoint(*a, **bars)
    for a0, a1 in zip(args, a):  # user arrays are unchanged when an error is raised
        np.testing.assert_array_equal(a0, a1)
