"""What the side-by-side scripts (``hvp.py``, ``dense.py``) share: a median time of repeated
calls, and JAX set up as the other peers run, on one thread and in float64."""

import statistics
import time


def median_time(call, budget=0.5, repeats=3):
    """The median time of ``call()``: at least ``repeats`` calls, more while ``budget`` seconds
    last (up to 50)."""
    times = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start < budget and len(times) < 50):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def jax_modules():
    """``(jax, jax.numpy)`` as ``peers/jax_peer.py`` sets JAX up (one XLA thread unless
    ``ADSRC_BENCH_PEER_THREADS`` says otherwise, float64), or None when JAX is missing."""
    try:
        from peers import jax_peer
    except ImportError:
        return None
    return jax_peer.jax, jax_peer.jnp
