"""Kernels whose indices may or may not be negative at run time, for tests/test_index_bounds.py.

adsrc reads this file with ``inspect``: keep it a real module, kernels at module level."""


def interior_stencil(x, y):
    """x[i - 1] over range(1, ...): never negative."""
    n = len(x)
    for i in range(1, n - 1):
        y[i] = x[i - 1] * x[i + 1]


def descending_shift(x, y):
    """x[i - 1] over range(n - 1, 0, -1): i >= 1, never negative."""
    n = len(x)
    for i in range(n - 1, 0, -1):
        y[i] = x[i - 1] * x[i]


def modulo_wrap(x, y):
    """(i - 1) % n is Python's modulo: never negative."""
    n = len(x)
    for i in range(n):
        y[i] = x[(i - 1) % n] * x[i]


def csr_gather(indptr, indices, data, x, y):
    """Elements of an index array are taken to be valid indices."""
    for i in range(len(indptr) - 1):
        acc = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            acc += data[k] * x[indices[k]]
        y[i] = acc * acc


def calls_csr_gather(indptr, indices, data, x, y):
    """The gather in a called kernel, then a write of the caller's own."""
    csr_gather(indptr, indices, data, x, y)
    y[0] = 2.0 * y[0]


def csr_gather_after_a_continue(indptr, indices, data, x, y):
    """The gather after an 'if' that continues on some trips: it runs under a flag."""
    for i in range(len(indptr) - 1):
        if x[i] > 0.0:
            if x[i] > 100.0:
                continue
        acc = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            acc += data[k] * x[indices[k]]
        y[i] = acc * acc


def periodic_shift(x, y):
    """x[i - 1] over range(n): x[-1] at i = 0."""
    n = len(x)
    for i in range(n):
        y[i] = x[i - 1] * x[i]


def reversal(x, y):
    """x[n - 1 - i] is never negative over range(n), but the bounds know no upper bounds: it
    is wrapped (the cost of one compare)."""
    n = len(x)
    for i in range(n):
        y[i] = x[n - 1 - i] * x[i]


def countdown(x, y):
    """k falls by one each trip: anything, for a flow-insensitive bound."""
    k = len(x) - 1
    while k > 0:
        y[k] = x[k - 1] * x[k]
        k -= 1


def parameter_shift(x, y, s):
    """An integer parameter may be negative."""
    for i in range(len(y)):
        y[i] = x[i + s] * x[i]
