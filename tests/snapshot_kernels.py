"""Kernels for the array-snapshot tests (see adsrc.analyses.snapshots): loops that overwrite
elements of an array the reverse sweep needs, some of which may copy the array instead.

Only +, -, * and / so that a complex-step derivative of the plain kernel is exact.
"""

import numpy as np


def square_prefix(x, c, lo, hi):
    """Overwrites x[lo:hi] once each; a copy of x pays off when the loop covers at least half
    of it and lo is not negative (a negative index wraps around)."""
    for i in range(lo, hi):
        x[i] = x[i] * x[i] * c


def square_backwards(x, c, stride):
    """The same, from the last element down, every ``stride``-th element (stride 1 or 2)."""
    n = x.shape[0]
    if stride == 1:
        for i in range(n - 1, -1, -1):
            x[i] = x[i] * x[i] * c + x[(i + 1) % n]
    else:
        for i in range(n - 1, -1, -2):
            x[i] = x[i] * x[i] * c + x[(i + 1) % n]


def written_twice(x, c):
    """Each x[i] is overwritten twice per iteration: its first new value is needed back, so
    no copy of x before the loop can replace the pushes."""
    n = x.shape[0]
    for i in range(n):
        x[i] = x[i] * x[i] * c
        x[i] = x[i] * x[i] + c


def shifted_write(x, c):
    """Writes x[i + 1], not indexed by the counter itself: pushes only."""
    n = x.shape[0]
    for i in range(n - 1):
        x[i + 1] = x[i + 1] * x[i] * c


def sweeps_with_copy(x, y, c, sweeps):
    """A Gauss-Seidel-like recurrence over two arrays, several sweeps: both are copied once
    per sweep."""
    n = x.shape[0]
    for s in range(sweeps):
        for i in range(1, n):
            x[i] = x[i] * x[i - 1] * c + y[i]
            y[i] = y[i] * x[i]


def nested_copies(x, z, a):
    """x is copied before the outer loop, z before some runs of the inner loop: the inner
    copies sit above x's on the tape while the reverse sweep runs the outer loop."""
    n = x.shape[0]
    for i in range(1, n):
        for j in range(i):
            z[j] = z[j] * a + x[j]
        x[i] = x[i] * x[i] + z[i - 1]


def relax_through_copy(x, c, sweeps):
    """Each sweep copies x into a scratch array through a slice assignment, then rewrites x in
    a loop over ``range(x.shape[0])``: both loops visit their whole array from 0 up, so both
    always copy it, and the generated code makes no run-time choice."""
    n = x.shape[0]
    t = np.zeros_like(x)
    for s in range(sweeps):
        t[:] = x
        for i in range(x.shape[0]):
            x[i] = x[i] * t[i] * c + t[(i + 1) % n]


def relaxed_energy(x, c, sweeps):
    """sum(x^3) after ``relax_through_copy``: a scalar, for Hessian-vector products."""
    relax_through_copy(x, c, sweeps)
    e = 0.0
    for i in range(x.shape[0]):
        e += x[i] * x[i] * x[i]
    return e


def reweighted_energy(x, w, sweeps):
    """Each sweep adds w-weighted cubes of x, then rewrites w over its whole length: the
    reverse sweep needs w's copies, which carry no tangent (w does not depend on x)."""
    e = 0.0
    for s in range(sweeps):
        for i in range(x.shape[0]):
            e += w[i] * x[i] * x[i] * x[i]
        for i in range(w.shape[0]):
            w[i] = w[i] * w[i] * 0.5 + 0.25
    return e


def squares_through_scratch(x, c, sweeps):
    """A scratch array rewritten from its own old values over its whole length each sweep,
    then added into x: the reverse sweep of that loop reads the old elements it restores, so
    it copies them back one by one instead of reading its copy of t in place."""
    t = np.zeros_like(x)
    t[:] = x
    for s in range(sweeps):
        t[:] = t * t * c + x
        x[:] = x + 0.1 * t


def copy_into(dst, src):
    """A called kernel copying over its parameter: its reverse sweep must write the caller's
    array back in place (it cannot just read its copy in place, as with a local array)."""
    dst[:] = src


def copies_through_a_callee(x, c, sweeps):
    """relax_through_copy with the copy into the scratch t made by a called kernel."""
    n = x.shape[0]
    t = np.zeros_like(x)
    for s in range(sweeps):
        copy_into(t, x)
        for i in range(x.shape[0]):
            x[i] = x[i] * t[i] * c + t[(i + 1) % n]


def overwrite_after_use(x, y, c, start, stop):
    """Part of x is read, then overwritten by a loop whose reverse reads no element of x: the
    reverse sweep takes x's old values from the copy in place when the copy was taken (from
    half of x up), and pops them back one by one otherwise."""
    for i in range(start, stop):
        y[i] = y[i] + x[i] * x[i]
    for i in range(start, stop):
        x[i] = c * y[i]


def two_copies_one_read_in_place(x, y, c):
    """One loop overwrites x, whose old elements its reverse reads, and then y, whose old
    elements it does not; both were read before it.  The copies are pushed x first, so the
    reverse sweep must be done with y's copy (taken in place) before it drops x's."""
    t = x[0] * y[0]
    for i in range(x.shape[0]):
        x[i] = x[i] * c + t
        y[i] = 2.0 * x[i]


def sum_of_squares(x):
    s = 0.0
    for j in range(len(x)):
        s += x[j] * x[j]
    return s


def scaled_by_a_callee_reading_x(x, d):
    """Each x[i] is overwritten by a value a called kernel computes from the whole of x, then
    partly overwritten: the reverse of each iteration calls that kernel's reverse sweep,
    which reads x as it was then, so x's old elements are restored one by one (the copy was
    read in place, the callee reading x as it is at the end: wrong gradients)."""
    for i in range(len(x)):
        x[i] = d[i] * sum_of_squares(x)
