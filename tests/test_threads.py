"""Calls of one differentiated kernel from several threads at once.

A kernel object is shared by threads (the compiled code releases the GIL); what it keeps
between calls (the analyses of its source, the modules it made) must not let one thread's
first call of a mode, which generates code, change what another thread's call computes.  Each
race is made to happen, not waited for: a thread is held inside the step that opens the window
(by a patched function), while the other makes its call.
"""

import threading

import numpy as np
import pytest

import adsrc
import checkpointed_hessian_kernels as H
from adsrc import pipeline
from corpus import kernels as K
from corpus.problems import poisson2d_csr


def _problem():
    indptr, indices, data = poisson2d_csr(3)
    rng = np.random.default_rng(31)
    return indptr, indices, data, rng.uniform(-1, 1, 9), rng.uniform(-1, 1, 9)


def test_a_tangent_call_while_another_thread_generates_code(monkeypatch, tmp_path):
    """The kernel returns nothing, so its outputs are the arrays it writes, which the object
    works out from the return type it infers.  A tangent call asking for them while another
    thread's first adjoint call was inferring the same return type (on the object's fresh
    analyses) was told 'a float', the inference's answer for a function calling itself: the
    tangent of a return value the kernel does not have, zeros in vector mode, and an adjoint
    refusing x_bar, for good (recorded in the cache under the kernel's key)."""
    monkeypatch.setenv("ADSRC_CACHE_DIR", str(tmp_path))       # the adjoint is generated
    indptr, indices, data, x, b = _problem()
    direction = np.linspace(-1.0, 1.0, len(data))
    f = adsrc.differentiate(K.gauss_seidel, wrt=("data", "b"), backend="python")

    def tangent():
        (x_dot,) = f.tangent(indptr, indices, data, x.copy(), b, 2, data_dot=direction)
        return x_dot

    want = tangent()                                # the tangent mode, compiled before
    inferring, other_done = threading.Event(), threading.Event()
    held = threading.current_thread()
    infer = pipeline.TypeInference.run

    def held_inferring(self):
        if threading.current_thread() is held and not inferring.is_set():
            inferring.set()
            other_done.wait(timeout=1.0)            # the other thread's call, meanwhile
        return infer(self)

    monkeypatch.setattr(pipeline.TypeInference, "run", held_inferring)
    got = []

    def other():
        inferring.wait(timeout=30)
        try:
            got.append(tangent())
        except Exception as exc:                    # noqa: BLE001 - asserted below
            got.append(exc)
        other_done.set()

    thread = threading.Thread(target=other)
    thread.start()
    (data_bar, b_bar) = f.adjoint(indptr, indices, data, x.copy(), b, 2, x_bar=np.ones(9))
    thread.join(timeout=60)
    assert inferring.is_set() and not thread.is_alive()
    assert isinstance(got[0], np.ndarray), got
    np.testing.assert_array_equal(got[0], want)
    # the adjoint is the tangent's transpose: <x_bar, J v> = <J^T x_bar, v>
    assert np.sum(want) == pytest.approx(data_bar @ direction, rel=1e-12)
    # finite differences of the kernel
    h = 1e-6
    plus, minus = x.copy(), x.copy()
    K.gauss_seidel(indptr, indices, data + h * direction, plus, b, 2)
    K.gauss_seidel(indptr, indices, data - h * direction, minus, b, 2)
    np.testing.assert_allclose(want, (plus - minus) / (2 * h), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_checkpointed_calls_of_two_signatures_at_once(monkeypatch, backend):
    """A kernel with a checkpointed loop keeps its parts per signature, and the last call's
    signature: H v with int32 indices read the int64 signature another thread's call had
    just set, and ran the parts made for it (the compiled code refused the int32 arrays:
    'Buffer dtype mismatch')."""
    from adsrc.checkpointed_kernels import KernelWithCheckpointedLoop

    indptr, indices, data, x, b = _problem()
    wide = (indptr.astype(np.int64), indices.astype(np.int64))
    v = np.cos(np.arange(9.0))
    hvp = adsrc.hvp(H.gauss_seidel_energy, wrt="x", backend=backend)

    def h_v(index_arrays):
        return hvp(*index_arrays, data, x.copy(), b, 2, x_dot=v)

    want = {32: h_v((indptr, indices)), 64: h_v(wide)}
    np.testing.assert_allclose(want[32], want[64], rtol=1e-14)
    parted, other_done = threading.Event(), threading.Event()
    held = threading.current_thread()
    parts = KernelWithCheckpointedLoop._parts

    def held_after_parts(self, *args, **kwargs):
        found = parts(self, *args, **kwargs)
        if threading.current_thread() is held and not parted.is_set():
            parted.set()
            other_done.wait(timeout=30)             # the other thread's call, meanwhile
        return found

    monkeypatch.setattr(KernelWithCheckpointedLoop, "_parts", held_after_parts)
    got = []

    def other():
        parted.wait(timeout=30)
        got.append(h_v(wide))
        other_done.set()

    thread = threading.Thread(target=other)
    thread.start()
    mine = h_v((indptr, indices))
    thread.join(timeout=60)
    assert parted.is_set() and other_done.is_set()
    np.testing.assert_array_equal(mine, want[32])
    np.testing.assert_array_equal(got[0], want[64])
    # H v against central finite differences of the gradient
    grad = adsrc.grad(H.gauss_seidel_energy, wrt="x", backend=backend)
    step = 1e-5
    fd = (grad(indptr, indices, data, x + step * v, b, 2)
          - grad(indptr, indices, data, x - step * v, b, 2)) / (2 * step)
    np.testing.assert_allclose(mine, fd, rtol=1e-6, atol=1e-9)
