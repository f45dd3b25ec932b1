"""Kernels whose scalar locals have several webs (see adsrc.normalize.webs), each with its twin
``<name>_split``: the same kernel renamed by hand exactly as the pass must rename it.  Where a
web must stay whole (a value carried to the next iteration, read after its loop, joined after
an if/else, carried through a while loop or past a break) the twin keeps the name there and
renames only the webs that are really independent.
"""

import math


def two_loops(x, y, n):
    for i in range(n):
        t = x[i] * x[i]
        y[i] = math.sin(t)
    for i in range(n):
        t = y[i] + x[i]
        y[i] = t * t


def two_loops_split(x, y, n):
    for i in range(n):
        t = x[i] * x[i]
        y[i] = math.sin(t)
    for i in range(n):
        t_2 = y[i] + x[i]
        y[i] = t_2 * t_2


def three_uses(x, y, n):
    """Three sibling loops and a straight-line reassignment: four webs of ``t``."""
    for i in range(n):
        t = math.exp(x[i])
        y[i] = y[i] * t
    for i in range(n):
        t = y[i] * x[i]
        t = t * t + 1.0
        y[i] = y[i] / t
    for i in range(1, n):
        t = y[i - 1] - x[i]
        y[i] = y[i] + math.cos(t)


def three_uses_split(x, y, n):
    for i in range(n):
        t = math.exp(x[i])
        y[i] = y[i] * t
    for i in range(n):
        t_2 = y[i] * x[i]
        t_3 = t_2 * t_2 + 1.0
        y[i] = y[i] / t_3
    for i in range(1, n):
        t_4 = y[i - 1] - x[i]
        y[i] = y[i] + math.cos(t_4)


def loop_carried(x, y, n):
    """``s`` is read in the iteration after the one that assigns it: one web with the
    assignment before the loop; the second loop's ``s`` is a web of its own."""
    s = 1.0
    for i in range(n):
        y[i] = y[i] + s * x[i]
        s = math.sin(x[i]) + 0.5 * s
    for i in range(n):
        s = x[i] * y[i]
        y[i] = s * s


def loop_carried_split(x, y, n):
    s = 1.0
    for i in range(n):
        y[i] = y[i] + s * x[i]
        s = math.sin(x[i]) + 0.5 * s
    for i in range(n):
        s_2 = x[i] * y[i]
        y[i] = s_2 * s_2


def read_after_loop(x, y, n):
    """The last ``t`` of the first loop is read after it (the one before it when the loop runs
    no trip: bound on every path, so normalisation adds no check)."""
    t = 0.0
    for i in range(n):
        t = x[i] * x[i]
        y[i] = math.sin(t)
    y[0] = y[0] + t
    for i in range(n):
        t = y[i] + x[i]
        y[i] = t * t


def read_after_loop_split(x, y, n):
    t = 0.0
    for i in range(n):
        t = x[i] * x[i]
        y[i] = math.sin(t)
    y[0] = y[0] + t
    for i in range(n):
        t_2 = y[i] + x[i]
        y[i] = t_2 * t_2


def if_else_join(x, y, n):
    """Both branches assign ``t``, read after the if: one web."""
    for i in range(n):
        if x[i] > 0.0:
            t = x[i] * y[i]
        else:
            t = 2.0 * x[i]
        y[i] = t * t
    for i in range(n):
        t = y[i] - x[i]
        y[i] = math.tanh(t)


def if_else_join_split(x, y, n):
    for i in range(n):
        if x[i] > 0.0:
            t = x[i] * y[i]
        else:
            t = 2.0 * x[i]
        y[i] = t * t
    for i in range(n):
        t_2 = y[i] - x[i]
        y[i] = math.tanh(t_2)


def while_loops(x, y, n):
    """Only the while test joins the two assignments of ``s`` (the body reads the value it
    has just assigned); ``k`` is carried through the test and the body.  The second loop
    starts ``k`` afresh and reuses ``t``."""
    k = 0
    s = 0.0
    while s < 1.2 and k < n:
        t = x[k] * x[k]
        s = t + y[k]
        y[k] = y[k] * s
        k = k + 1
    k = 0
    while k < n:
        t = y[k] * x[k]
        y[k] = t * t
        k = k + 1


def while_loops_split(x, y, n):
    k = 0
    s = 0.0
    while s < 1.2 and k < n:
        t = x[k] * x[k]
        s = t + y[k]
        y[k] = y[k] * s
        k = k + 1
    k_2 = 0
    while k_2 < n:
        t_2 = y[k_2] * x[k_2]
        y[k_2] = t_2 * t_2
        k_2 = k_2 + 1


def break_carries(x, y, n):
    """(The loop is written as adsrc structures it: what follows a break goes to the else.)
    The assignment of ``t`` before the break reaches the read after the loop only through
    the break; with no break (or no trip) the read sees the ``t`` from before the loop: one
    web."""
    t = 0.0
    for i in range(n):
        if x[i] > 0.9:
            t = x[i] * x[i]
            break
        else:
            y[i] = y[i] * x[i]
    y[0] = y[0] + t
    for i in range(n):
        t = y[i] + x[i]
        y[i] = t * t


def break_carries_split(x, y, n):
    t = 0.0
    for i in range(n):
        if x[i] > 0.9:
            t = x[i] * x[i]
            break
        else:
            y[i] = y[i] * x[i]
    y[0] = y[0] + t
    for i in range(n):
        t_2 = y[i] + x[i]
        y[i] = t_2 * t_2


def name_taken(x, y, n):
    """The kernel already names a variable ``t_2``: the new web is ``t_3``."""
    t_2 = 0.5
    for i in range(n):
        t = x[i] * x[i]
        y[i] = t * t_2
    for i in range(n):
        t = y[i] + x[i]
        y[i] = t * t


def name_taken_split(x, y, n):
    t_2 = 0.5
    for i in range(n):
        t = x[i] * x[i]
        y[i] = t * t_2
    for i in range(n):
        t_3 = y[i] + x[i]
        y[i] = t_3 * t_3


def int_web(x, y, n):
    """The second web of ``t`` holds only ints: as its own name it would become an int, so the
    name is not split (its type, float, stays that of every use)."""
    for i in range(n):
        t = x[i] * x[i]
        y[i] = math.sin(t)
    for i in range(n):
        t = i * i
        y[i] = y[i] * t


def halve(a):
    return 0.5 * a


def passed_to_kernel(x, y, n):
    """``t`` is passed to a user kernel: left as it is."""
    for i in range(n):
        t = x[i] * x[i]
        u = halve(t)
        y[i] = u
    for i in range(n):
        t = y[i] + x[i]
        y[i] = t * t


def returned(x, y, n):
    """``v`` is returned: left as it is (the second web would otherwise be split)."""
    for i in range(n):
        v = x[i] - y[i]
        y[i] = v * v
    v = 0.0
    for i in range(n):
        v = v + x[i] * y[i]
    return v


def energy(x, n):
    """A scalar kernel (for H v) whose temporary ``t`` is reused in sibling loops."""
    e = 0.0
    for i in range(n):
        t = x[i] * x[i]
        e = e + math.sin(t)
    for i in range(1, n):
        t = x[i] - x[i - 1]
        e = e + t * t * t
    return e


def energy_split(x, n):
    e = 0.0
    for i in range(n):
        t = x[i] * x[i]
        e = e + math.sin(t)
    for i in range(1, n):
        t_2 = x[i] - x[i - 1]
        e = e + t_2 * t_2 * t_2
    return e
