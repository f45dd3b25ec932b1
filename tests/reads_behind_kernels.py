"""Kernels for the reads-behind tests (see adsrc.analyses.reads_behind): loops that overwrite
x[i] once and read other elements of x, behind the counter (no old value needed) or not.

Only +, -, * and / so that a complex-step derivative of the plain kernel is exact.
"""


def prefix_recurrence(x, y, c):
    """Ascending, reads x[i - 1]: written by the previous iteration."""
    for i in range(1, x.shape[0]):
        x[i] = x[i - 1] * c + y[i] * x[i - 1]


def suffix_recurrence(x, c):
    """Descending, reads x[i + 1]: written by the previous iteration."""
    for i in range(x.shape[0] - 2, -1, -1):
        x[i] = x[i + 1] * x[i + 1] * c + 1.0


def reads_ahead(x, c):
    """Ascending, reads x[i + 1]: not yet written, so its old value is needed."""
    for i in range(x.shape[0] - 1):
        x[i] = x[i + 1] * x[i + 1] * c


def reads_own(x, c):
    """Reads the element it overwrites: its old value is needed."""
    for i in range(x.shape[0]):
        x[i] = x[i] * x[i] * c


def guarded_wrong_way(indptr, indices, data, x):
    """Descending rows reading x[j] for j < i: elements the loop writes later."""
    n = len(x)
    for i in range(n - 1, -1, -1):
        acc = x[i]
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            if j < i:
                acc -= data[k] * x[j]
        x[i] = acc * 0.5


def guard_then_moved(indptr, indices, data, x):
    """A forward substitution whose guarded index moves after the test: x[j + 1] may be the
    element the row overwrites."""
    n = len(x)
    for i in range(n):
        acc = x[i]
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            if j < i:
                j = j + 1
                acc -= data[k] * x[j]
        x[i] = acc * 0.5


def repeated_recurrence(x, y, c, sweeps):
    """prefix_recurrence inside a sweep loop that feeds x back into y: the reverse of an earlier
    sweep reads x as that sweep left it."""
    for s in range(sweeps):
        for i in range(1, x.shape[0]):
            x[i] = x[i - 1] * c + y[i] * x[i - 1]
        for i in range(x.shape[0]):
            y[i] = y[i] + x[i] * 0.5


def periodic_recurrence(x, c):
    """Reads x[i - 1] from i = 0: x[-1] is the last element, which the loop writes later
    (the compiled code wraps a negative index round as Python does)."""
    for i in range(x.shape[0]):
        x[i] = x[i - 1] * x[i - 1] * c + 0.25


def guarded_by_arithmetic(x, a):
    """x[j] under 'if j < i' with j = i - 1, not an element of an index array: j is -1 on the
    first trip, and x[-1] is the last element, which a later trip overwrites."""
    for i in range(x.shape[0]):
        j = i - 1
        if j < i:
            x[i] = 0.5 * x[i] + a[i] * x[j] * x[j]


def counter_down_to_minus_one(x, a):
    """Reads x[i + 1], behind a descending counter, but the counter ends at -1: the last trip
    writes x[-1], the last element, which the first trip read."""
    for i in range(x.shape[0] - 2, -2, -1):
        x[i] = 0.5 * x[i] + a[i] * x[i + 1] * x[i + 1]
