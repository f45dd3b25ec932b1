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
