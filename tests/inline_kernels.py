"""Kernels that call helpers returning arrays (inlined into their callers, see
adsrc/normalize/inline_calls.py).  Allocations are ``np.zeros_like`` of a float argument, so
that the complex step runs them on complex arrays."""

import numpy as np

from adsrc.kernels import solvers


def residual(A, x, b):
    return b - A @ x


def residual_norm(A, x, b):
    r = residual(A, x, b)
    return np.dot(r, r)


def csr_product(indptr, indices, data, x):
    """y = A x of a CSR matrix, into an array of its own."""
    y = np.zeros_like(x)
    for i in range(len(indptr) - 1):
        acc = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            acc += data[k] * x[indices[k]]
        y[i] = acc
    return y


def jacobi_by_products(indptr, indices, data, dinv, x, b, omega, iters):
    """Damped Jacobi whose product comes from a helper, called on every trip."""
    for it in range(iters):
        y = csr_product(indptr, indices, data, x)
        x += omega * dinv * (b - y)


def scaled(v, a):
    w = np.zeros_like(v)
    for i in range(len(v)):
        w[i] = a * np.sin(v[i])
    return w


def smoothed(v, a, steps):
    """Calls another helper returning an array, and rebinds its own parameter ``v``."""
    for s in range(steps):
        v = 0.5 * (v + scaled(v, a))
    return v


def bent(u, a):
    return a * u * u


def composed(x, b, a, y):
    """Helpers in expressions (twice in one statement, in order), with an expression as an
    argument, nested, inside a loop's range, and a scalar helper in an inlined body."""
    for i in range(len(scaled(x, a))):
        y[i] += bent(x[i], a)
    y += smoothed(x * b, a, 2) - 3.0 * scaled(b + y, 0.5 * a)
    return np.dot(scaled(y, a), smoothed(x, a, 1)) + np.sum(residual_by_name(x, y))


def bent_all(v, a):
    w = np.zeros_like(v)
    for i in range(len(v)):
        w[i] = bent(v[i], a)
    return w


def through_others(x, a):
    """Calls helpers whose bodies call functions (one returning an array, one a float) that
    the kernel itself does not call."""
    y = smoothed(x, a, 2)
    z = bent_all(y, a)
    return np.dot(y, z)


def residual_by_name(x, y):
    r = y - x
    return r


def relaxed(x, b, omega):
    """Returns an array named like the caller's, which the body reads."""
    x = x + omega * (b - x * x)
    return x


def relaxation(x, b, omega, iters):
    for it in range(iters):
        x = relaxed(x, b, omega)
    return np.sum(x * x)


def argument_bound_to_returned_arrays(x, b, a, iters):
    """Binds an argument to the array a helper returns, in a loop (the caller's x is left as it
    was)."""
    for it in range(iters):
        x = scaled(b, a)
        b[:] = b + 0.1 * x
    return np.sum(x * b)


def relaxed_beside_writes(x, b, omega):
    """The helper binds its parameter again (a copy of x's values, which the caller writes in
    place)."""
    for it in range(2):
        b[:] = b + omega * relaxed(x, b, omega)
        x[0] += b[1]
    return np.sum(x * b)


def doubled(v):
    w = np.zeros_like(v)
    w[:] = 2.0 * v
    return w


def into_its_argument(x, b):
    """``x = doubled(x)``: the helper's own array, filled in place, while it reads ``x``."""
    x = doubled(x)
    b[:] = b * x
    return np.sum(b)


def squares_after_scaling(v, a):
    """Writes its argument in place, then returns an array of its own; binds its float again
    (the caller's is left as it was)."""
    a *= 0.5
    v *= a
    w = np.zeros_like(v)
    w[:] = v * v
    return w


def writes_through_a_helper(x, a):
    y = squares_after_scaling(x, a)
    return np.dot(x, y) + a


def reads_what_a_helper_writes(x, a):
    return np.dot(x, squares_after_scaling(x, a))


def recursive(v, depth):
    if depth > 0:
        return recursive(0.5 * v, depth - 1)
    return v


def calls_a_recursive_helper(x):
    y = recursive(x, 2)
    return np.sum(y)


def recursive_in_place(v, depth):
    """Returns an array, and its value does not depend on its call of itself."""
    if depth > 0:
        recursive_in_place(v, depth - 1)
    v[0] = 2.0 * v[0]
    return 2.0 * v


def calls_a_helper_that_calls_itself(x):
    y = recursive_in_place(x, 2)
    return np.sum(y)


def in_a_while_condition(x):
    s = 0.0
    while np.sum(doubled(x)) > s:
        s += 1.0
    return s


def in_a_branch_of_a_choice(x, c):
    s = np.sum(doubled(x) if c > 0.0 else x)
    return s


# helpers returning several values -------------------------------------------------------------


def moments(x):
    """Two floats."""
    s = 0.0
    q = 0.0
    for i in range(len(x)):
        s += x[i]
        q += x[i] * x[i]
    return s, q


def variance(x):
    s, q = moments(x)
    return q / len(x) - (s / len(x)) ** 2


def residual_and_norm(A, x, b):
    """An array of its own and a float computed from it."""
    r = residual(A, x, b)
    return r, np.dot(r, r)


def damped_steps(A, x, b, step, iters):
    """Steps along A^T r, damped by the residual's norm, both from one helper on every trip;
    x is the caller's, written in place."""
    for it in range(iters):
        r, rr = residual_and_norm(A, x, b)
        x += step * (A.T @ r) / (1.0 + rr)
    r, rr = residual_and_norm(A, x, b)
    return rr + r[0]


def rotated(u, v, c, s):
    return c * u - s * v, s * u + c * v


def swapped(p, q):
    """Its arguments, the other way round."""
    return q, p


def rotations(x, y, c, s):
    """Values unpacked into elements, into the names they are computed from, and swapped names
    (scalars and local arrays)."""
    for i in range(len(x)):
        x[i], y[i] = rotated(x[i], y[i], c, s)
    a = x[0]
    b = y[1]
    u = x * y
    w = x + y
    for it in range(3):
        a, b = rotated(b, a, c, s)
        a, b = swapped(a, b)
        u, w = swapped(u, w)
        u[0] += a
    return a * b + np.sum(x * y) + np.dot(u, w)


def split_sums(v, w):
    """Several values that are arrays: one of its own, and an argument (Python's alias); a
    helper returning several values called inside."""
    s, q = moments(v)
    z = np.zeros_like(v)
    z[:] = q * v + s * w
    return z, w, s


def through_several(x, b, a):
    """A helper's array unpacked into an argument's name (the caller's b is left as it was),
    the values of a call whose values are not used, a name given twice, and values stored
    into whole arrays in order."""
    z, x2, s = split_sums(x, b)
    b, x3, t = split_sums(z, x2)
    moments(b)
    t, t = moments(x3 * b)
    y = np.zeros_like(z)
    z[:], y[:], s = split_sums(y + b, z)    # y gets z's values after the store into z
    return np.dot(b, z) * a + s * t + np.sum(x2) + np.sum(x3 * y)


def moments_kept_whole(x):
    m = moments(x)
    return m[0]


def moments_into_three(x):
    s, q, r = moments(x)
    return s + q + r


def one_value_into_two(x):
    u, v = doubled(x)
    return np.sum(u)


def returns_two_values(x):
    return np.sum(x), np.dot(x, x)


def moments_up_to(x, cap):
    """Several values returned from inside a loop, or at the end."""
    s = 0.0
    q = 0.0
    for i in range(len(x)):
        s += x[i]
        q += x[i] * x[i]
        if q > cap:
            return s, q / (i + 1)
    return s, q / len(x)


def calls_moments_up_to(x, cap):
    s, m = moments_up_to(x, cap)
    return s * m + s * s


def squares_until(x, lo):
    """An array of its own, returned from inside a loop as a copy, with a float."""
    y = np.zeros_like(x)
    for i in range(len(x)):
        y[i] = x[i] * x[i]
        if y[i] < lo:
            return np.copy(y), x[i] * lo
    return 2.0 * x, lo


def calls_squares_until(x, lo):
    u, t = squares_until(x, lo)
    return np.sum(u * u) * t


def squares_until_uncopied(x, lo):
    y = np.zeros_like(x)
    for i in range(len(x)):
        y[i] = x[i] * x[i]
        if y[i] < lo:
            return y, lo
    return 2.0 * x, lo


def calls_squares_until_uncopied(x):
    u, t = squares_until_uncopied(x, 0.5)
    return np.sum(u) * t


def first_square_below(x, lo):
    y = np.zeros_like(x)
    for i in range(len(x)):
        y[i] = x[i] * x[i]
        if y[i] < lo:
            return y
    return 2.0 * x


def copy_early_then_uncopied(x, hi):
    y = np.zeros_like(x)
    for i in range(len(x)):
        y[i] = x[i] * x[i]
        if y[i] > hi:
            return np.copy(y)
    y[0] = y[0] + 1.0
    return y


def calls_copy_early_then_uncopied(x):
    return np.sum(copy_early_then_uncopied(x, 0.5))


def calls_first_square_below(x):
    u = first_square_below(x, 0.5)
    return np.sum(u)


def two_or_three(x):
    if x[0] > 0.0:
        return x[0], x[1]
    return x[0], x[1], x[2]


def calls_two_or_three(x):
    a, b = two_or_three(x)
    return a * b


def twice(v):
    w = 2.0 * v
    return w, w


def calls_twice(x):
    u, w = twice(x)
    u[0] = 1.0
    return np.dot(u, w)


def forwards_moments(x):
    return moments(x)


def calls_forwards_moments(x):
    s, q = forwards_moments(x)
    return s * q


def through_their_module(indptr, indices, data, x, b, omega):
    """Kernels called through their module; the kernel's own 'spmv' is a float."""
    y = np.zeros_like(b)
    solvers.sor(indptr, indices, data, x, b, omega, 2)
    solvers.spmv(indptr, indices, data, x, y)
    spmv = np.dot(y, y)
    return spmv + np.dot(x, b)


def squared_into(v, out):
    """A helper may name a parameter 'out'; only a kernel adsrc differentiates may not (its
    return value's adjoint is out_bar=)."""
    for i in range(len(v)):
        out[i] = 2.0 * v[i] * v[i]


def into_a_helpers_out(x, y):
    squared_into(x, y)
    return np.sum(y * x)
