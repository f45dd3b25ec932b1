"""One small kernel per item of the supported language subset (docs/API.md).

Used by tests/test_subset.py.  adsrc reads this file with ``inspect``: keep it
a real module, no decorators, kernels at module level.  Every kernel is written
so that the test inputs of test_subset.py keep branches and trip counts away
from their switching points (finite differences stay valid).
"""

import math
from math import sqrt

import numpy as np

import kernel_settings

# module-level numeric constant (inlined by adsrc)
HALF = 0.5

# ---------------------------------------------------------------------------
# arguments and scalars
# ---------------------------------------------------------------------------


def scalars_float_int(a, b, n):
    """Float scalars a, b and an int scalar n (loop bound and a factor)."""
    s = a
    for i in range(n):
        s = s * b + a
    return s + n * a * b


def array_1d(x, y):
    """Element reads/writes of 1-D arrays; y is overwritten."""
    for i in range(len(x)):
        y[i] = x[i] * x[i] + 2.0 * y[i]


def array_2d(a, x, y):
    """a[i, j] reads of a 2-D array, y = y + a x."""
    m = a.shape[0]
    p = a.shape[1]
    for i in range(m):
        acc = 0.0
        for j in range(p):
            acc += a[i, j] * x[j]
        y[i] += acc


def mean_square(x):
    """float(len(x)) of an active x: an integer count, with no derivative."""
    return np.sum(x * x) / float(len(x))


def negative_constant_indices(x, u, y):
    """x[-1], u[i, -2] reads and a y[-1] write: counted from the end on both backends."""
    for i in range(u.shape[0]):
        y[i] = x[-1] * u[i, -2] + x[-2]
    y[-1] = y[-1] * x[-3]


def periodic_stencil(x, y):
    """x[i - 1] at i = 0 is x[-1], the last element, on both backends (a periodic stencil)."""
    n = len(x)
    for i in range(n):
        y[i] = x[i - 1] * x[i] + x[(i + 1) % n] * x[(i - 2) % n]


def periodic_sweeps(x, b, sweeps):
    """An in-place periodic sweep: x[i - 1] at i = 0 reads x[-1], not yet written in this sweep,
    and x[i + 1 - n] is x[i + 1] counted from the end but at the last i."""
    n = len(x)
    for s in range(sweeps):
        for i in range(n):
            x[i] = 0.25 * (x[i - 1] * x[i] + x[i + 1 - n]) + b[i]


def periodic_2d(u, v):
    """u[i - 1, j] and u[i, j - 1] wrap in both dimensions."""
    for i in range(u.shape[0]):
        for j in range(u.shape[1]):
            v[i, j] = u[i - 1, j] * u[i, j - 1] + u[i, j]


def negative_index_variables(x, y, shift):
    """Indices held in variables and shifted by a parameter, negative for some i."""
    n = len(x)
    for i in range(n):
        k = i - 2
        y[i] = x[k] * x[i + shift] + y[k + 1]


def numpy_methods(x, y):
    """x.copy(), x.sum() and x.dot(y), NumPy's methods for np.copy, np.sum and np.dot."""
    z = x.copy()
    z *= y
    return z.sum() * x.dot(y)


def module_constants(x):
    """np.pi, math.e and -np.inf (a running maximum's start), numeric constants of modules, and
    an int one, kernel_settings.PASSES, as a loop bound (an int, not a float)."""
    m = -np.inf
    for p in range(kernel_settings.PASSES):
        for i in range(len(x)):
            m = max(m, np.pi * x[i] * x[i] - math.e * x[i])
    return m


def elements_in_whole_array_statements(x, w, y, k):
    """Scalars inside whole-array statements: elements w[1], w[k], w[k + 1], the extent
    x.shape[0] and len(x); each is one value for all the elements."""
    y[:] = x * w[1] + w[k] + x / x.shape[0] + len(x) * w[0] * w[k + 1]
    y[1:] += 0.5 * x[:-1] * w[2]
    return np.dot(y, y)


def arrays_from_slices(x, u):
    """Local arrays bound to expressions of slices alone, of the slices' shape: a
    full-weighting restriction, differences and a 2-D interior; then a prolongation."""
    xc = 0.25 * (x[0:-2:2] + 2.0 * x[1:-1:2] + x[2::2])
    d = x[1:] - x[:-1]
    inner = u[1:-1, 1:-1] * u[:-2, 1:-1]
    y = np.zeros(len(x))
    y[1:-1:2] = xc
    y[2:-1:2] += 0.5 * (xc[:-1] + xc[1:])
    return np.dot(y, y) + np.dot(d, d) + np.sum(inner * inner)


def arrays_bound_again(A, b, x, iters):
    """Conjugate gradients written with NumPy: r and p bound to new arrays on every trip, Ap
    first bound inside the loop, r = r - alpha * Ap reading its own old values."""
    r = b - A @ x
    p = r.copy()
    rs = np.dot(r, r)
    for k in range(iters):
        Ap = A @ p
        alpha = rs / np.dot(p, Ap)
        x[:] = x + alpha * p
        r = r - alpha * Ap
        rs_new = np.dot(r, r)
        p = r + (rs_new / rs) * p
        rs = rs_new
    return np.dot(x, x)


def arrays_allocated_in_loops(x, w, sweeps):
    """np.zeros, x.copy() and expressions first bound inside a loop or a branch: allocated once
    before the loop, given their values on every trip."""
    n = len(x)
    s = 0.0
    for k in range(sweeps):
        acc = np.zeros(n)
        old = x.copy()
        for i in range(1, n - 1):
            acc[i] = w[k] * (old[i - 1] + old[i + 1])
        x[:] = x + acc
        if k % 2 == 0:
            shifted = 2.0 * acc
        else:
            shifted = acc - old
        s += np.dot(shifted, acc)
    return s


def arguments_bound_again(A, v, x, iters):
    """Arguments bound to new arrays, which leaves the caller's arrays as they were: power
    iteration's v = w / |w| on every trip, then x = x * lam and a write into that new x."""
    lam = 0.0
    for k in range(iters):
        w = A @ v
        lam = np.dot(v, w)
        v = w / np.sqrt(np.dot(w, w))
    x = x * lam
    x[0] = 2.0 * x[0]
    return lam + np.dot(x, x) + v[1]


def swapped_local_arrays(b, x0, sweeps):
    """Jacobi for -u'' = b with two local arrays swapped after every sweep, 'x, xn = xn, x', as
    NumPy users avoid a copy: adsrc copies values, which no name can tell from swapping arrays."""
    n = len(b)
    x = x0.copy()
    xn = np.zeros(n)
    for s in range(sweeps):
        for i in range(1, n - 1):
            xn[i] = 0.5 * (x[i - 1] + x[i + 1] + b[i])
        x, xn = xn, x
    return x[1] * x[3] + xn[2]


def allocation_after_early_return(x):
    """An allocation after a statement that may return, so inside the early return's guard."""
    if x[0] > 1.0:
        return x[0]
    t = np.zeros(len(x))
    t[:] = x * x
    return t[0] + t[-1]


def float64_allocations(x, y):
    """dtype= of an allocation, when it is float64 (local arrays always are)."""
    t = np.zeros(len(x), dtype=np.float64)
    s = np.empty_like(x, dtype=float)
    t[:] = x * x
    s[:] = t + y
    y[:] = s * x


def iterate_elements(x, w):
    """for v in x and for i, v in enumerate(w), one writing x ahead of the element it reads
    (NumPy's iterator reads element i when trip i starts)."""
    s = 0.0
    for v in x:
        x[len(x) - 1] = 0.5 * x[len(x) - 1] + v * v
        s += v * v
    for i, v in enumerate(w):
        s += i * v * x[i]
    return s


def iterate_zipped(x, y, z):
    """for a, b in zip(x, y) (to the shorter: y is longer), and enumerate(zip(x, z)) writing x
    ahead of the element it reads."""
    s = 0.0
    for a, b in zip(x, y):
        s += a * b * b
    for i, (a, c) in enumerate(zip(x, z)):
        z[i] = a * np.sin(c) + z[i] * a
        x[len(x) - 1] += 0.1 * a
    return s


def chained_indices_2d(a, u, x):
    """a[i][j] reads and u[i][j] writes, the same elements as a[i, j] and u[i, j]."""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            u[i][j] = u[i][j] * x[j] + a[i][j] * a[i][j + 1 - 1]


def write_2d(u, f):
    """a[i, j] writes of a 2-D array, in place."""
    n, m = u.shape
    for i in range(n):
        for j in range(m):
            u[i, j] = u[i, j] * f[i, j] + f[i, j]


# ---------------------------------------------------------------------------
# integer index arrays
# ---------------------------------------------------------------------------


def gather_scatter(idx, x, y):
    """a[idx[k]] reads (gather) and writes (scatter with +=)."""
    for k in range(len(idx)):
        y[idx[k]] += x[idx[k]] * x[k]


def csr_matvec(indptr, indices, data, x, y):
    """CSR y = A x with indptr/indices index arrays."""
    for i in range(len(y)):
        acc = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            acc += data[k] * x[indices[k]]
        y[i] = acc


# ---------------------------------------------------------------------------
# assignment and augmented assignment
# ---------------------------------------------------------------------------


def augassign_scalars(a, b):
    """= += -= *= /= on float scalars."""
    s = a
    s += b
    s -= 0.25 * a
    s *= b
    s /= 1.0 + a * a
    return s


def augassign_elements(x, y):
    """= += -= *= /= on array elements."""
    for i in range(len(x)):
        y[i] += x[i]
        y[i] -= 0.5 * x[i] * x[i]
        y[i] *= x[i]
        y[i] /= 2.0 + x[i] * x[i]


def augassign_2d_elements(u, v):
    """augmented assignment on a[i, j]."""
    n, m = u.shape
    for i in range(n):
        for j in range(m):
            u[i, j] *= v[i, j]
            u[i, j] += v[i, j] * v[i, j]


# ---------------------------------------------------------------------------
# whole-array element-wise statements
# ---------------------------------------------------------------------------


def axpy_whole(x, dinv, r, alpha):
    """x += alpha * dinv * r"""
    x += alpha * dinv * r


def residual_whole(b, y, r):
    """r[:] = b - y"""
    r[:] = b - y * y


def whole_2d(u, f):
    """u[:, :] = ... on 2-D arrays."""
    u[:, :] = 0.5 * u + f * u


def whole_2d_by_rows(u, f, g):
    """u[:] and u[i] of 2-D arrays: as in NumPy, the dimensions left out are whole (u[:, :],
    the row u[i, :]); a 2-D Jacobi sweep into a buffer copied back."""
    g[:] = u
    for i in range(1, u.shape[0] - 1):
        g[i] = 0.25 * (u[i - 1] + u[i + 1]) * f[i]
    u[:] = g


def slice_inner(x, y):
    """x[1:-1], x[:-2], x[2:]"""
    y[1:-1] = 0.5 * (x[:-2] + x[2:]) * x[1:-1]


def slice_step(x, y):
    """x[::2], x[1::2]"""
    y[::2] = y[::2] * x[1::2]
    y[1::2] += x[::2]


def slice_negative_step(x, y, u):
    """Negative steps, down from the last element: x[::-1], x[::-2] into y[1::2] (odd and even
    lengths differ), bounds x[4:0:-1] and x[-2:0:-1], a reversed target y[::-1], the rows of a
    2-D array reversed, u[::-1, :], and np.dot of a reversed array."""
    y[:] = x[::-1] * y + np.dot(x[::-1], y)
    y[1::2] = x[::-2] * y[1::2]
    y[1:5] = x[4:0:-1] * y[1:5] + x[-2:0:-1]
    y[::-1] = y * x
    u[:, :] = u[::-1, :] * u


def slice_runtime_bound(v, w):
    """v[1:n-1] with a run-time bound n."""
    n = len(v)
    v[1:n - 1] = v[1:n - 1] * w[0:n - 2] + w[2:n]


def slices_read_old_values(x, u):
    """Whole-array statements that read their target at other elements than they write, which
    read the old values, as NumPy does: an in-place heat step x[1:-1] += ..(x[:-2], x[2:]), a
    shift x[1:] = x[:-1] * x[1:], and an in-place 2-D Jacobi step (all neighbours old); and a
    local array shifted the other way, t[:-1] = t[1:] * t[:-1]."""
    t = np.copy(x)
    for step in range(2):
        x[1:-1] += 0.25 * (x[:-2] - 2.0 * x[1:-1] * x[1:-1] + x[2:])
        x[1:] = x[:-1] * x[1:]
        u[1:-1, 1:-1] = 0.25 * (u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] * u[1:-1, 2:])
        t[:-1] = t[1:] * t[:-1] + 0.5
    x[:] = x * t


def size_attribute(u, x):
    """u.size of a 2-D array and x.size of a 1-D one as loop bounds, and the extent x.shape[0]
    dividing a float (a mean)."""
    s = 0.0
    for k in range(u.size):
        s += u[k // u.shape[1], k % u.shape[1]] * x[k % x.size]
    return s * s / x.shape[0]


def shape_unpack_in_loop(u, f):
    """n, m = u.shape inside a loop body."""
    for it in range(2):
        n, m = u.shape
        for i in range(n):
            for j in range(m):
                u[i, j] = u[i, j] * f[i, j] * (0.5 * m)


# ---------------------------------------------------------------------------
# loops
# ---------------------------------------------------------------------------


def range_step2(x, y, start, stop):
    """for over range(start, stop, 2) with run-time bounds."""
    for i in range(start, stop, 2):
        y[i] = y[i] * x[i] + x[i + 1]


def range_negative(x):
    """range(n - 1, -1, -1): a backward recurrence in place."""
    n = len(x)
    for i in range(n - 1, -1, -1):
        if i < n - 1:
            x[i] = x[i] * (1.0 + 0.5 * x[i + 1])
        else:
            x[i] = x[i] * x[i]


def range_negative_step2(x, y):
    """range(n - 1, 0, -2)"""
    n = len(x)
    for i in range(n - 1, 0, -2):
        y[i] = y[i] * x[i - 1] + x[i]


def reversed_range(x):
    """reversed(range(n - 1)): a backward recurrence in place, as range_negative."""
    for i in reversed(range(len(x) - 1)):
        x[i] = x[i] * (1.0 + 0.5 * x[i + 1])


def reversed_range_steps(x, y, lo, hi):
    """reversed(range(lo, hi, 3)) and reversed(range(hi, lo, -2)), run-time bounds: each
    trip reads what the one before wrote."""
    for i in reversed(range(lo, hi, 3)):
        y[i] = y[i] * x[i] + 0.5 * y[i + 1]
    for i in reversed(range(hi, lo, -2)):
        y[i] = y[i] * x[i] + 0.5 * y[i - 1]


def nested_loops(x, y, sweeps):
    """three nested loops, inner bound depends on the outer counter."""
    n = len(x)
    for s in range(sweeps):
        for i in range(n):
            for j in range(i):
                y[i] += 0.1 * x[j] * y[j]


def while_halving(a, c, tol):
    """while loop whose trip count depends on the float data."""
    s = a
    while s > tol:
        s = 0.5 * s * c
    return s


def while_index(x, y):
    """while loop over an integer counter with a data-dependent condition."""
    i = 0
    n = len(x)
    while i < n and x[i] > 0.0:
        y[i] = y[i] * x[i]
        i += 1


def if_elif_else(x, y, t):
    """if/elif/else on run-time float data."""
    for i in range(len(x)):
        if x[i] > t:
            y[i] = x[i] * x[i] * y[i]
        elif x[i] < -t:
            y[i] = -x[i] * y[i]
        else:
            y[i] = math.sin(x[i]) + y[i]


def conditional_expressions(x, w, y):
    """a if c else b reading arrays in its branches, where Python reads only the chosen one:
    x[i + 1] past the end in a branch not taken (the body, then the else branch), x[i + 2] in a
    branch inside a branch, and a float condition choosing between two formulas."""
    n = len(x)
    for i in range(n):
        right = x[i + 1] if i < n - 1 else 0.0
        ahead = 0.0 if i == n - 1 else w[i + 1]
        far = (x[i + 2] * w[i] if i < n - 2 else -x[i]) if i > 0 else x[i] * x[i]
        y[i] = y[i] * right + 2.0 * ahead * x[i] + far * (w[i] if x[i] > 0.5 else x[i] / w[i])


def array_gathers(indptr, indices, data, perm, x, y):
    """x[idx] read element by element: a CSR row as NumPy users write it (a gather by a slice
    of the index array), a permutation with a repeated index, and the target read through a
    gather (its old values, as NumPy's temporary holds them)."""
    for i in range(len(y)):
        y[i] = y[i] * np.dot(data[indptr[i]:indptr[i + 1]], x[indices[indptr[i]:indptr[i + 1]]])
    y[:] = y + x[perm] * x
    y[:] = 0.5 * y[perm] + y
    return np.sum(x[perm] * y[perm])


def where_clip_diag(A, x, mask, lo, y):
    """np.where choosing by a comparison of arrays, by an integer mask and by scalars; np.clip
    of an array and of a scalar; np.diag of a matrix in an expression, bound to a name and
    summed (its trace)."""
    y[:] = np.where(x > lo, x * x, 2.0 * x * y) + np.where(mask, y, -x)
    s = np.where(lo > 0.5, lo * lo, lo) + np.clip(2.0 * lo, 0.5, 1.5)
    d = np.diag(A)
    y[:] = y * np.clip(x, lo, 1.2) / np.diag(A) + s * d
    return np.sum(np.diag(A) * y) * np.dot(d, x)


def augmented_powers(x, y, k):
    """**= on elements and whole arrays; //= and %= on an integer (a loop's length)."""
    for i in range(len(y)):
        y[i] **= 2
        y[i] += x[i] ** 1.5
    y **= 1.5
    k //= 2
    k %= 3
    for j in range(k):
        y[j] *= x[j]


def mean_max_min(x, u, y):
    """np.mean, np.max and np.min of arrays, of an expression and of a 2-D array, as NumPy's
    methods too, and np.max of a residual in a stopping test; np.where with a reduction in a
    branch (NumPy computes both branches whole)."""
    scale = np.max(np.abs(u))
    for k in range(3):
        m = x.mean()
        y[:] = y + 0.1 * (x - m) * np.min(x * y) / scale
        if np.max(np.abs(y - x)) < 1e-12:
            break
    y[:] = np.where(y > x.max(), y / np.sum(y), np.sqrt(x) * y.min())
    return np.mean(u * u) + np.max(u) * u.min()


def rolled_and_elementary(u, c, y):
    """A periodic heat step with np.roll (shifts of 1, -1 and 2, the target read through them),
    np.square, and the elementary functions sinh, cosh, arctan, log1p, expm1, hypot."""
    for s in range(2):
        u[:] = u + c * (np.roll(u, 1) - 2.0 * u + np.roll(u, -1)) + 0.01 * np.roll(u, s + 1)
    y[:] = np.square(u) + np.sinh(u) * np.cosh(y) + np.arctan(u * y)
    y += np.log1p(u * u) - np.expm1(-0.5 * y) + math.atan(c) * math.log1p(c)
    y += np.hypot(u, y) * math.hypot(c, 1.0)


def momentum_names(A, b, x, lr, iters):
    """a = b of arrays never written in place: heavy ball's x_prev = x (x an argument bound
    to new arrays) and Nesterov's x = x_new (a local bound in the loop), copies of the values
    where NumPy gives a second name."""
    x_prev = x
    y = x
    for k in range(iters):
        g = A @ y - b
        x_new = y - lr * g + 0.3 * (x - x_prev)
        y = x_new + (k / (k + 3.0)) * (x_new - x)
        x_prev = x
        x = x_new
    return np.dot(x, x) + np.dot(x_prev, b)


def axis_reductions(A, x, y):
    """np.sum, np.mean, np.max, np.min along an axis of a 2-D array expression, as keywords,
    positions (-1, -2 too) and methods, in element-wise statements and bound to names: row
    sums scaling a product, a log-sum-exp over rows, column maxima."""
    d = np.sum(np.abs(A), axis=1)
    B = A * A
    m = np.max(B, axis=0) * x
    y[:] = (A @ x) / d + np.mean(B, 0) * y[::-1] + np.min(A, axis=-2)
    y += np.log(np.sum(np.exp(A - m[0]), axis=-1)) + 0.1 * B.sum(axis=1) + B.max(1)
    return np.dot(m, y) + np.sum(B.min(axis=0))



def broadcasting(A, d, x, y):
    """A 1-D array broadcast along a 2-D one, as NumPy does: columns scaled by A * d, rows by
    d[:, None], d[None, :] spelled out, a matrix-vector product along rows, np.outer, a local
    bound to a broadcast whose first operand is the 1-D one, reductions of broadcasts, and the
    target read through a broadcast row of itself (its old values)."""
    B = A * d + np.outer(x, d) / d[:, None]
    C = x * B - (B @ x) * d[None, :] + np.exp(-x[:, np.newaxis])
    A[:, :] = A - 0.1 * np.outer(A[0], d) + 0.2 * A[1]
    y[:] = np.sum(C * y, axis=1) + np.max(B * d, 1)
    # (sums of fewer than 8 elements, which NumPy adds in order as the compiled loops do)
    return np.sum(x[:2] * A[:2, :2]) + np.sum(d[1:3, None] * C[:2, 1:]) + np.dot(y, y)



def kept_dimensions(Z, W):
    """Reductions along an axis that keep it (keepdims=True) or get it back ([:, None] of an
    expression), broadcast against the 2-D array: a softmax over rows, columns centred."""
    E = np.exp(Z - np.max(Z, axis=1, keepdims=True))
    P = E / np.sum(E, axis=1)[:, None]
    Q = P - P.mean(axis=0, keepdims=True) + 0.1 * np.sum(W * W, 0)[None, :]
    return np.sum(Q * W)

def constant_arrays(A, x, lam, y):
    """Arrays of constants: np.ones, np.ones_like, np.full (its value read from an argument),
    np.full_like and np.eye (Tikhonov's A + lam * I), alone and inside expressions, with
    shapes as a tuple, a .shape and a length, and dtype=np.float64."""
    w = np.ones(len(x))
    B = A + lam * np.eye(A.shape[0]) + np.full(A.shape, 0.1 * lam) * np.ones_like(A)
    y[:] = B @ x + np.full_like(x, lam) * w + np.ones((x.shape[0],), dtype=np.float64)
    return np.dot(y, y)


def signs_differences_methods(A, x, theta, y):
    """np.sign in a soft threshold (LISTA's shrinkage), np.diff in a discrete gradient, and
    methods called on expressions: (A * A).sum(1), x[1:].sum(), A[0].dot(x), (A @ x).max()."""
    for k in range(2):
        z = A @ x + y
        x[:] = np.sign(z) * np.maximum(np.abs(z) - theta, 0.0)
    g = np.diff(y)
    y[1:] = y[1:] + 0.5 * g * np.sign(x[1:] - 0.1)
    y += 0.01 * (A * A).sum(1)
    return np.dot(g, g) + x[1:].sum() * A[0].dot(x) + (A @ x).max() + np.sum(np.sign(x))


def floors_and_remainders(x, u, L, h, y):
    """Floats' // and % as Python computes them: particles wrapped into a periodic box of side
    L (np.mod of an array), their cells int(p // h) and the linear interpolation of u there;
    a remainder by a negative divisor, np.floor_divide, a remainder whose divisor is active
    (the derivative of a % b by b is -(a // b)); np.floor, np.ceil and math.floor,
    math.ceil (ints) as factors and an index."""
    n = u.shape[0]
    p = np.mod(x, L)
    for k in range(x.shape[0]):
        cell = int(p[k] // h)
        t = p[k] / h - cell
        y[k] = (1.0 - t) * u[cell % n] + t * u[(cell + 1) % n]
        y[k] += math.ceil(0.9 * x[k]) * x[k] + u[math.floor(p[k] * n) % n]
    y += (x * x) % (-L) + np.floor_divide(x, L) * x + 2.0 % (L + x)
    y *= np.floor(1.7 * x) + np.ceil(x * x)
    return np.sum(y * y)


def running_sums(x, y, w, h):
    """np.cumsum and np.cumprod (and the method x.cumsum()) of 1-D expressions: bound to a
    local in a loop, in an element-wise statement reading its own target, and inside
    whole-array reductions."""
    for it in range(2):
        c = np.cumsum(y * h) + x
        y[:] = 0.5 * np.cumprod(np.tanh(c)) + y
    y[1:] = np.cumsum(y[1:] * w[1:]) - x[1:].cumsum()
    return np.sum(np.cumsum(w * x)) + np.dot(np.cumprod(w), y)


def running_sums_elsewhere(u, x, y):
    """np.cumsum and np.cumprod where a statement asks for their elements other than once
    each, in order, which lowering computes once, into an array of their own: inside a
    reduction along an axis (read through a new axis) and a product, in a branch of np.where,
    broadcast along a 2-D statement; in a loop, whose trips overwrite those arrays."""
    for it in range(2):
        y[:] = np.sum(u * np.cumsum(x)[:, None], axis=1) / 4.0 + u @ np.cumsum(x * y) / 8.0
        y[:] = np.where(x > 0.0, np.cumprod(0.5 * y), y)
        u[:, :] = u * np.cumsum(y) / 4.0
    return np.sum(u * u) + np.sum(y)


def if_scalar(a, b):
    """if/else on a scalar, each branch a different formula."""
    if a > b:
        s = a * b
    else:
        s = a + b * b
    return s


def loop_break(x, limit):
    """break as the last statement of an if branch."""
    s = 0.0
    for i in range(len(x)):
        s += x[i] * x[i]
        if s > limit:
            break
    return s


def nested_break_while(x, tol):
    """break inside an if inside an if of a while loop: the outer branch's record must be on
    the tape on the path that breaks too."""
    s = 0.0
    k = 0
    while k < 100:
        s += x[k % len(x)] * 0.5
        if s > tol:
            if k > 2:
                break
        k += 1
    return s * s


def nested_break_records(x, y, tol):
    """A nested break after overwrites the reverse sweep restores, in an array."""
    for i in range(len(x)):
        y[i] = y[i] * x[i]
        if y[i] > tol:
            if i > 1:
                y[i] = y[i] * y[i]
                break
        y[i] = y[i] + 0.5


def index_array_rewritten(x, perm, y):
    """An index array the kernel overwrites (a rotation of perm per sweep): the reverse sweep
    needs its old values back, element by element (the compiled tape copies only float
    arrays whole)."""
    n = len(x)
    for s in range(3):
        for i in range(n):
            y[i] = y[i] * x[perm[i]] + 0.1
        for i in range(n):
            perm[i] = (perm[i] + 1) % n


def nested_continues(x, w, y):
    """continue under two nested ifs, twice in one body, once beside an else: the rest of the
    body runs under a flag (adsrc.normalize.control), not copied once per path."""
    for i in range(len(x)):
        if x[i] > 0.0:
            if w[0] * x[i] < 0.9:
                y[i] = y[i] * w[1]
                continue
        y[i] = y[i] * x[i] + w[0]
        if x[i] < 0.9:
            if w[1] * x[i] > -0.6:
                continue
        else:
            y[i] = w[1] * y[i]
        y[i] = y[i] * y[i]


def continue_past_two_rests(x, y):
    """continue three ifs deep, with statements after the inner and after the outer if: both
    rests run under flags, and the continue must clear both (it cleared only the inner one, and
    the outer rest ran on trips that continued)."""
    for i in range(len(x)):
        if x[i] > 1.0:
            if x[i] > 2.0:
                if i % 2 == 0:
                    continue
            y[i] = y[i] * x[i] * x[i]
        y[i] = y[i] + 3.0 * x[i]


def loop_continue(x, y):
    """continue as the last statement of an if branch."""
    for i in range(len(x)):
        if x[i] < 0.0:
            y[i] = -x[i] * y[i]
            continue
        y[i] = y[i] * x[i] + x[i]


def while_break(x, limit):
    """break inside a while loop."""
    s = 0.0
    i = 0
    while i < len(x):
        s = s + x[i] * s + x[i]
        i += 1
        if s > limit:
            break
    return s


def early_returns(x, y, tol):
    """return from a branch at the top level, and from inside an inner loop (a convergence test
    leaving both loops); the statements after each run only if it did not return."""
    if tol < 1.0:
        return tol * x[0]
    s = 0.0
    for sweep in range(3):
        for i in range(len(x)):
            s += x[i] * y[i]
            if s > tol:
                y[i] = s
                return s * y[0]
        y[0] = 0.5 * s
    return s


def early_bare_return(x, y):
    """a bare return from inside a loop: y keeps what the trips before it wrote."""
    for i in range(len(x)):
        if x[i] > 1.2:
            return
        y[i] = x[i] * y[i]


def recursive_early_return(x, level):
    """A recursive kernel returning early at the deepest level, its local array allocated before
    that return (a V-cycle's shape)."""
    t = np.zeros(len(x))
    if level == 0:
        x[:] = x * x
        return
    t[:] = 0.5 * x
    recursive_early_return(t, level - 1)
    x[:] = x + t * x


def tuple_assignment(x, perm, y):
    """a, b = b, a + b (every value before any store): a scalar recurrence, an element swap
    x[i], x[k] = x[k], x[i] through an index array, and a rotation of two arrays' elements."""
    a, b = 1.0, 0.5
    for i in range(len(x)):
        a, b = b, a + x[i] * b
    for k in range(len(perm)):
        i = perm[k]
        x[i], x[k] = x[k] * b, x[i]
    for i in range(len(x)):
        x[i], y[i] = 0.8 * x[i] - 0.6 * y[i], 0.6 * x[i] + 0.8 * y[i] * a


def temporaries(x, y):
    """local scalar temporaries overwritten in the loop."""
    t = 0.0
    for i in range(len(x)):
        t = x[i]
        t = t * t + y[i]
        u = t * x[i]
        t = u - t
        y[i] = t * u
    return t


# ---------------------------------------------------------------------------
# math / NumPy functions, one kernel per spelling
# ---------------------------------------------------------------------------


def fn_np_sqrt(a):
    return np.sqrt(a)


def fn_math_sqrt(a):
    return math.sqrt(a)


def fn_from_sqrt(a):
    return sqrt(a)


def fn_np_exp(a):
    return np.exp(a)


def fn_math_exp(a):
    return math.exp(a)


def fn_np_log(a):
    return np.log(a)


def fn_math_log(a):
    return math.log(a)


def fn_np_sin(a):
    return np.sin(a)


def fn_math_sin(a):
    return math.sin(a)


def fn_np_cos(a):
    return np.cos(a)


def fn_math_cos(a):
    return math.cos(a)


def fn_np_tanh(a):
    return np.tanh(a)


def fn_math_tanh(a):
    return math.tanh(a)


def fn_np_abs(a):
    return np.abs(a) * a


def fn_builtin_abs(a):
    return abs(a) * a


def fn_pow_op(a, b):
    return a ** b + a ** 3 + 2.0 ** a


def fn_np_power(a, b):
    return np.power(a, b) + np.power(a, 2)


def fn_np_minimum(a, b):
    return np.minimum(a, b) * a


def fn_builtin_min(a, b):
    return min(a, b) * b


def fn_np_maximum(a, b):
    return np.maximum(a, b) * a


def fn_builtin_max(a, b):
    return max(a, b) * b


def functions_elementwise(x, y):
    """the functions applied element by element to arrays, in a loop."""
    for i in range(len(x)):
        y[i] = (np.sqrt(x[i]) + math.exp(x[i]) * np.log(x[i]) + np.sin(y[i])
                + math.cos(x[i]) * np.tanh(y[i]) + abs(y[i]) + x[i] ** 1.5
                + np.power(y[i], 2) + np.minimum(x[i], y[i]) + max(x[i], y[i]))


def functions_whole_array(x, y):
    """the functions applied to whole arrays in an element-wise statement."""
    y[:] = np.sqrt(x) * np.exp(y) + np.sin(x) * np.tanh(y) + np.maximum(x, y) + x ** 2


# ---------------------------------------------------------------------------
# reductions and local arrays
# ---------------------------------------------------------------------------


def dot_sum(x, y):
    """np.dot and np.sum."""
    d = np.dot(x, y)
    s = np.sum(x * x)
    return d * s


def sum_2d(u):
    """np.sum of a 2-D array."""
    s = np.sum(u * u)
    return s


def local_zeros(x):
    """np.zeros local array."""
    n = len(x)
    t = np.zeros(n)
    for i in range(n):
        t[i] = x[i] * x[i]
    s = 0.0
    for i in range(n):
        s += t[i] * x[n - 1 - i]
    return s


def local_empty(x, y):
    """np.empty local array filled before use."""
    n = len(x)
    t = np.empty(n)
    t[:] = x * y
    y[:] = t * t + x


def local_zeros_like(x, y):
    """np.zeros_like local array."""
    t = np.zeros_like(x)
    for i in range(len(x)):
        t[i] = x[i] * y[i]
    y += t * x


def local_copy(x, y):
    """np.copy local array: y updated from a frozen copy of the old values."""
    old = np.copy(y)
    n = len(y)
    for i in range(1, n - 1):
        y[i] = x[i] * (old[i - 1] + old[i + 1])


def local_zeros_2d(u):
    """a 2-D np.zeros((m, p)) local array."""
    m, p = u.shape
    t = np.zeros((m, p))
    for i in range(m):
        for j in range(p):
            t[i, j] = u[i, j] * u[i, j]
    u[:, :] = t * u


def local_zeros_shape(u):
    """a 2-D np.zeros(u.shape) local array."""
    t = np.zeros(u.shape)
    t[:, :] = u * u
    u[:, :] = t * u + u


def local_zeros_like_2d(u):
    """a 2-D np.zeros_like local array."""
    t = np.zeros_like(u)
    t[:, :] = u * u
    u[:, :] = t * u + u


def local_copy_2d(u):
    """np.copy of a 2-D array, a 5-point-like stencil."""
    old = np.copy(u)
    n, m = u.shape
    for i in range(1, n - 1):
        for j in range(1, m - 1):
            u[i, j] = 0.25 * (old[i - 1, j] + old[i + 1, j] + old[i, j - 1] + old[i, j + 1]) * old[i, j]


def shape_and_len(u, x):
    """len, .shape[k] and n, m = u.shape."""
    n, m = u.shape
    k = len(x)
    s = 0.0
    for i in range(u.shape[0]):
        for j in range(m):
            s += u[i, j] * x[(i + j) % k]
    return s * n


# ---------------------------------------------------------------------------
# calls to other user kernels
# ---------------------------------------------------------------------------




def sq_norm(x):
    s = 0.0
    for i in range(len(x)):
        s += x[i] * x[i]
    return s


def scale_add(x, y, alpha):
    for i in range(len(x)):
        y[i] += alpha * x[i]


def call_scalar_in_expression(x, y):
    """a callee's scalar return used inside an expression."""
    return 3.0 * sq_norm(x) * sq_norm(y) + sq_norm(x)


def call_statement(x, y, alpha):
    """array-mutating call as a statement, scalar argument an expression."""
    scale_add(x, y, 2.0 * alpha)
    scale_add(y, x, alpha * alpha)


def squared_horner(x, c):
    """(x0 c^2 + x1 c + x2)^2: its forward sweep records p, overwritten in its loop."""
    p = 0.0
    for k in range(3):
        p = p * c + x[k]
    return p * p


def call_results_recorded(x, y, t):
    """A call's result that the reverse sweep of its use reads, in a loop (so the caller
    records it before each trip overwrites it), and a result given to one of the call's
    arguments, t = f(x, t): the caller's records and the callee's come off the tape in the
    order they went on."""
    for i in range(len(y)):
        y[i] = y[i] * squared_horner(x, y[i])
        t = 0.1 * squared_horner(x, t)
    return y[0] + y[1] + t


def rec_sum(x, k):
    """recursive, scalar return: sum_{i<k} x[i]^2 * (i + 1)."""
    s = 0.0
    if k > 0:
        s = x[k - 1] * x[k - 1] * k + rec_sum(x, k - 1)
    return s


def rec_sweep(x, y, k):
    """recursive, array-mutating: y[i] = y[i] * x[i] + y[i-1] for i = 1..k."""
    if k > 0:
        rec_sweep(x, y, k - 1)
        y[k] = y[k] * x[k] + y[k - 1]


def smooth(u, v):
    return u * math.tanh(v) + 0.5 * math.sin(u)


def call_into_element(x, y):
    """a user call stored into an element, its arguments a reduction and the element itself."""
    for i in range(len(x)):
        x[i] = smooth(np.dot(y, x), x[i])


def call_of_inactive_in_expression(x, a):
    """a user call nested in an expression, with arguments that carry no derivative."""
    for i in range(len(x)):
        x[i] = x[i] * smooth(a, a)


def call_with_2d_element(x, u):
    """a user call with an element of a 2-D array as argument (u[i, 0] is not a slice)."""
    s = 0.0
    for i in range(len(x)):
        s += smooth(u[i, 0], x[i])
    return s


def reduction_into_element(x, y):
    """np.sum / np.dot stored into an element, also of the array reduced."""
    for i in range(len(x)):
        x[i] = np.sum(y) + 0.1 * np.dot(x, y)
    y[0] = np.sum(y)


def maxima_into_a_call(x, y, a):
    """np.max of an array in a call's argument, in a loop: the forward sweep saves the maxima's
    temporaries before each trip assigns them, on the first trip too (the Python backend's
    forward sweep read them unbound there)."""
    for i in range(len(y) - 1):
        y[i] += smooth(a / (1.0 + np.max(x) * np.max(x)), y[i])
    return np.sum(y)


def reduction_reads_target(x, a):
    """the name a reduction is assigned to is read inside the reduction."""
    a = np.sum(a * x)
    a = np.dot(a * x, x)
    return a


def calls_in_if_conditions(x, y):
    """reductions and user calls in if/elif conditions, at the top level and in a loop."""
    s = 0.0
    if sq_norm(x) > 1.0 + 0.5 * np.dot(x, y):
        s += np.sum(x)
    elif np.sum(y) > 0.0:
        s += np.sum(y)
    for i in range(len(x)):
        if np.dot(x, y) * x[i] > 0.3:
            s += x[i] * y[i]
        elif np.sum(y) < 0.5:
            s -= y[i]
    return s


def call_in_if_condition_in_loop(x, y):
    """a user call in the condition of an if inside a loop."""
    s = 0.0
    for i in range(len(x)):
        if smooth(x[i], y[i]) > 0.6:
            s += x[i] * y[i]
    return s


def calls_in_while_condition(x, tol):
    """a reduction and a user call in a while condition: evaluated again on every trip,
    also on the trips that end with continue."""
    k = 0
    while sq_norm(x) > tol * np.sum(x):
        k += 1
        if k == 2:
            x[0] = 0.5 * x[0]
            continue
        for i in range(len(x)):
            x[i] = 0.8 * x[i]
    return sq_norm(x)


def reduction_in_range(x, y):
    """a reduction in a loop bound."""
    for k in range(int(np.sum(x))):
        y[k] = y[k] * x[k]


# ---------------------------------------------------------------------------
# returns and default outputs
# ---------------------------------------------------------------------------


def returns_nothing(x, y, z):
    """mutates two float arrays and returns nothing: default outputs (y, z)."""
    for i in range(len(x)):
        y[i] = y[i] * x[i]
        z[i] = z[i] + y[i] * x[i]


def returns_scalar_and_mutates(x, y):
    """mutates y and returns a scalar: default outputs ("return",)."""
    s = 0.0
    for i in range(len(x)):
        y[i] = y[i] * x[i]
        s += y[i] * y[i]
    return s


def uses_constant(x):
    """a numeric module-level constant."""
    for i in range(len(x)):
        x[i] = HALF * x[i] * x[i]


def views_only_read(A, x, y):
    """Rows, a slice, the transpose and the diagonal of a matrix that nothing writes: NumPy's
    views and adsrc's copies hold the same values; a tuple that swaps local arrays."""
    for i in range(A.shape[0]):
        r = A[i]
        y[i] = np.dot(r, x)
    d = np.diag(A)
    t = A.T
    tail = x[1:]
    p = 2.0 * x
    q = 3.0 * x
    p, q = q, p
    p[0] = p[0] + q[1]
    for i in range(len(y)):
        y[i] += d[i] * x[i] + t[0, i] * p[i]
    return np.sum(tail * tail)


def power_of_array(x, p, y):
    """x ** p with a variable exponent, at a base that may be 0: there the derivative with
    respect to p is 0 (x ** p * log(x) is 0 * -inf)."""
    for i in range(len(x)):
        y[i] = x[i] ** p


def row_length(indptr, i):
    """An int: its adjoint seed is a float all the same."""
    return indptr[i + 1] - indptr[i]


def weighted_by_row_lengths(indptr, x):
    """Calls of a function returning an int, in a product and in a range."""
    s = 0.0
    for i in range(len(x)):
        s += x[i] * x[i] * row_length(indptr, i)
        for k in range(row_length(indptr, i)):
            s += 0.5 * x[i]
    return s


def relaxed_residual(x, b):
    """One Gauss-Seidel sweep of a tridiagonal system (diagonal 2.5, off-diagonals -1),
    writing x; returns the squared residual before it."""
    n = len(x)
    res = 0.0
    for i in range(n):
        acc = b[i]
        if i > 0:
            acc += x[i - 1]
        if i < n - 1:
            acc += x[i + 1]
        res += (acc - 2.5 * x[i]) ** 2
        x[i] = acc / 2.5
    return res


def sweeps_in_conditions(x, b, tol, sweeps):
    """Calls that write x in a while condition and in an elif condition, whose bodies write x
    too: a body runs after its condition, so the order is Python's."""
    while relaxed_residual(x, b) > tol:
        x[0] = 0.99 * x[0]
    for s in range(sweeps):
        if s % 2 == 0:
            x[1] += 0.1 * x[0]
        elif relaxed_residual(x, b) > 1e30:
            x[2] = 0.0
    return np.dot(x, x)


def halves_in_a_loop(x, iters):
    """A local array first bound in a loop, with a length the loop assigns from x's:
    allocated before the loop with that length."""
    s = 0.0
    for it in range(iters):
        n = len(x)
        m = n // 2
        h = np.zeros(m)
        for i in range(m):
            h[i] = x[2 * i] * x[2 * i + 1]
        s += np.sum(h) * (it + 1)
    return s


def residual_of_its_length(x, b):
    """An array allocated with a length computed first, ``n = len(x)``."""
    n = len(x)
    y = np.zeros(n)
    for i in range(n):
        y[i] = b[i] - 2.0 * x[i] * x[i]
    return y


def steps_along_residuals(x, b, iters):
    """The helper's array allocated in the caller's loop: n, assigned there, only measures x."""
    for it in range(iters):
        r = residual_of_its_length(x, b)
        x += 0.1 * r
    return np.dot(x, x)


def zeroth_powers(x, p, y):
    """x ** 0 and x ** p at p = 0 are 1 everywhere: their derivative is 0 at a zero base too
    (0 * x ** -1 is NaN there)."""
    for i in range(len(x)):
        y[i] = x[i] ** 0 + x[i] ** p + 3.0 * x[i]


def variable_step_ranges(x, y, a, b, s):
    """range(a, b, s) with a step known only at run time, either sign (the reverse sweep runs
    the same trips backwards)."""
    k = 0
    for i in range(a, b, s):
        y[k] = x[i] * x[i] + y[k] * x[i]
        k += 1
    for i in range(a, b, s):
        x[i] = x[i] * y[0]


def slices_with_bounds_known_at_run_time(x, y, k, m):
    """Slice bounds as Python takes them: negative ones count from the end, ones past either
    end are clipped, windows at the ends are shorter (x[i - 1:i + 2] at i = 0 is empty)."""
    s = np.dot(x[:k], x[:k]) + np.sum(x[k:] * x[k:]) + np.sum(x[m::-1]) + np.sum(x[:m:-1])
    for i in range(len(x)):
        y[i] = np.sum(x[i - 1:i + 2]) * s
    y[k:] += 2.0 * x[k:]
    return s + np.sum(x[:100]) + np.sum(x[-100:]) + np.sum(x[-100:-3]) + np.sum(x[7::-2])


def numbers_taken_by_their_truth(x, y, m):
    """'and'/'or' of numbers in conditions: Python takes them by their truth (``m``, not
    differentiated, holds zeros: a differentiated zero would change its truth when moved)."""
    for i in range(len(x)):
        if m[i] and y[i] or not m[i - 1]:
            y[i] = x[i] * y[i] + 1.0
        y[i] += x[i] if m[i] or m[i - 1] and x[i] else 2.0 * x[i]


def abs_of_integers(x, y):
    """abs of an int, as an index and as a factor."""
    for i in range(len(x)):
        y[i] = x[abs(i - 3)] * x[i] + abs(i - 2) * x[i]


def returns_none(x, y):
    """'return None' is 'return', early or last."""
    for i in range(len(x)):
        if x[i] > 5.0:
            return None
        y[i] = x[i] * x[i]
    return None


def comparisons_as_numbers(x, y):
    """A comparison in arithmetic is 0 or 1: a switch with no derivative of its own."""
    for i in range(len(x)):
        y[i] = (x[i] > 1.0) * x[i] * x[i] + (x[i] <= 1.0) * 2.0 * x[i]


def branches_of_other_shapes(x, y, k):
    """'a if c else b' of arrays with a scalar c: Python evaluates one branch, whose shape
    alone must fit (the other's may differ)."""
    y[:] = x[:k] * x[:k] if k < x.shape[0] else x[1:] + 2.0 * x[1:]
    return np.sum(y * y)


def array_or_scalar_branch(x, a, k):
    """'a if c else b' of an array and a scalar: the scalar is broadcast, as NumPy does."""
    x[:k] -= x[-k:] * x[-k:] if k > 2 else a * a
    return np.dot(x, x)


def comparisons_and_powers_of_ints(x, y, k):
    """Python's ints and bools: a comparison divided or raised to a negative power is a float,
    abs/min/max take comparisons as 0 or 1, an int to a power never negative is an int (an
    index), -(-e) is e."""
    for i in range(len(x)):
        y[i] = x[5 ** abs(k) % 3] * x[i] + x[2 ** len(x) % 5] + (i < k) / 3 \
            + x[i] * ((i < k) ** -1 if i < k else 1.0)
        y[i] += min(i < k, 3) * x[i] + abs(i != 2) * x[i] - (-(x[i] * x[i]))


def empty_slices(x, z, i, j):
    """Slices that are empty at run time fit each other, whatever their bounds, as in NumPy."""
    z[i:1] = 2.0 * x[j:1]
    z[1:] += x[:-1] * x[1:]


def big_integer_constants(x, y, i):
    """Int constants beyond 32 bits (10 ** 10, 2 ** 62), in code run without the GIL."""
    for k in range(len(x)):
        if i > 0:
            y[k] = x[k] * ((10 ** 10 * i) // 3) / 1e9 + x[k] * (2 ** 62 * i // 2 ** 60)


def bound_only_in_loops(x, z, sweeps):
    """Names bound only inside a loop, one of them in a branch, and the loop's counter, read
    after it: Python raises UnboundLocalError when the loop runs no trip, and the generated code
    checks that it ran one (tests/test_errors.py runs it with none)."""
    for sweep in range(sweeps):
        r = x * x - z
        c = np.dot(r, x)
        if sweep >= 0:
            d = c * x[0]
    z[:] = r * c + d * sweep


def read_before_bound_in_a_trip(x, z):
    """A name read under a condition before the statement binding it, which an earlier trip
    ran: the check stands before the read, and passes."""
    for i in range(len(x)):
        if i > 0:
            z[i] = previous * x[i]
        previous = x[i] * x[i]


def returns_from_a_loop_then_reads(x, n, tol):
    """An early return from a loop, and a name the loop binds read after it."""
    for it in range(n):
        s = np.dot(x, x) * (it + 1)
        if s < tol:
            return s
    return s * s


def extrema_of_three_or_more(x, y):
    """Python's min and max of more than two values, the first of equal values taken."""
    for i in range(1, len(x) - 1):
        y[i] = max(x[i - 1], x[i] * 2.0, x[i + 1]) + min(x[i], 0.5, x[i - 1] * x[i + 1], 3.0)


def argument_bound_then_written_in_a_loop(A, x, y):
    """Arguments bound to new arrays in a loop's body, and x written in place after its
    binding there: the caller's x is never the array written, in Python as here."""
    s = 0.0
    for k in range(3):
        x = A @ y
        x[0] = x[0] * 2.0
        y = x / np.sqrt(np.dot(x, x))
        s += x[0]
    return s


def read_after_a_first_trip_decides(x, b, n, tol):
    """Names read only where 'and', 'or' or a conditional expression has decided that a trip
    bound them (a do-while's test, a stop test before the update): checked as Python
    evaluates them, so the checks pass where Python runs, in every mode."""
    k = 0
    while k == 0 or err > tol:
        r = b - x * x * x
        x[:] = x + 0.2 * r
        err = np.dot(r, r)
        k += 1
    for it in range(n):
        if it > 0 and change < tol:
            break
        change = np.dot(x, x) * 1e-3 / (it + 1)
        x[:] = x * (1.0 - change)
    return np.dot(x, x) + (change if n > 0 else 0.0)


def _shrunk(x):
    for i in range(len(x)):
        x[i] = 0.5 * x[i]
    return np.sum(x * x)


def read_after_a_called_test_decides(x, tol):
    """A read after a call in 'or': the call, which writes x, decides whether err is read.  A
    check of that read would call it again (it named the kernel, which is inlined, and failed
    with NameError); the read stays unchecked, and the call runs once per test."""
    k = 0
    while _shrunk(x) > 1.0 or err > tol:
        k += 1
        err = x[0] * x[0]
        if k > 3:
            break
    return np.sum(x * x) * 2.0


def bound_read_from_the_target(x, A):
    """Slice bounds and a row index that read the array the statement writes: NumPy evaluates
    them once, before storing; an element loop read them again after its first stores
    (x[3] = 2.5 starts at 2, then at 1 once x[3] is 1.95), and the compiled code wrote past
    the array's end."""
    x[int(x[3]):] = x[int(x[3]):] * 0.5 + 0.7
    A[int(A[0, 0])] = A[1] * A[0, 1] + 5.0


def _first(v):
    return int(v[0])


def bound_from_a_called_kernel(x, y):
    """A called kernel in the index of what is assigned: it was left in the generated code as
    written (NameError, and a Cython build that failed)."""
    x[_first(y):] = 3.0 * x[_first(y):] * y[1]
    x[_first(y) - 1] = x[0] * y[2]


def _inside(i, n):
    return i < n - 1


def _is_big(x, i):
    if x[i] > 1.3:
        return True
    return x[i] * x[i] > 1.2


def bools_of_called_kernels(x):
    """Called kernels returning a bool: the Cython build failed, the seed of their return (0.0)
    going to an integer."""
    s = 0.0
    for i in range(len(x)):
        if _inside(i, len(x)):
            if _is_big(x, i):
                s += x[i] * x[i + 1]
            else:
                s -= x[i] * 0.5
    return s


def _next_element(x, k):
    k += 1
    return x[k]


def scalar_parameter_augmented_in_a_callee(x):
    """A called kernel's 'k += 1' rebinds its own k: it was taken for a write of the caller's
    k, and the statement reading k beside the call refused."""
    s = 0.0
    for k in range(len(x) - 1):
        s += _next_element(x, k) * x[k]
    return s


def allocated_ahead_from_a_name_a_loop_binds(x, n):
    """Local arrays first bound in a branch are allocated ahead of it, from extents only a
    loop binds (np.zeros(kk), a slice's count): read there only when the loop ran (else those
    arrays are never used)."""
    s = x[0] * x[0]
    for i in range(n):
        kk = i + 1
    if n > 0:
        w = np.zeros(kk)
        w[0] = x[1]
        v = x[0:kk] * 2.0
        s += np.sum(w * w) + np.sum(v * v)
    return s


def allocated_ahead_from_the_branch(x, c):
    """A local array first bound in a branch, its extent computed there: allocated ahead of
    the branch, where that extent may be negative (then the branch is not taken)."""
    s = x[0] * x[0]
    if c > 0:
        m = len(x) + c
        w = np.zeros(m)
        w[0] = x[1]
        s += np.sum(w * w)
    return s


def bound_to_an_empty_slice(x, i):
    """A local bound to a slice that is empty at run time (its count below zero)."""
    t = x[i:1] * 2.0
    return np.sum(t * x[i:1]) + x[0] * x[1]


def stored_names_read_at_their_store(x, y):
    """A name stored into elements by a tuple assignment is read at its store, as NumPy reads
    the array: a copy of its values taken before any store gave 'a' the old 'b' (a wrong
    array, no error), and an argument there was refused."""
    a = x * 1.0
    b = y * 1.0
    b[:], a[:] = a * 2.0, b
    y[:], x[:] = x * b, y
    a, y[:] = y * 0.5, a
    x[:] = x + a * y


def class_tests_guard_a_loop(x, w, flags, y):
    """np.isnan, np.isinf, np.isfinite and math's: comparisons, with no derivative to take
    (they were refused as calls with no derivative rule).  ``flags`` holds infinities and a
    NaN, which decide the elements summed, and a large w stops the loop."""
    s = 0.0
    for i in range(len(x)):
        if math.isnan(flags[i]) or np.isinf(flags[i]):
            continue
        if not (np.isfinite(x[i] * w * 1e307) and math.isfinite(flags[i])) or math.isinf(s):
            break
        s += w * x[i] * x[i] + np.isnan(flags[i] - flags[i])
        y[i] = s
    return s


def continues_side_by_side(x, w, y):
    """Eight ifs that continue, some nested (the flag's case), some plain: the stretches
    between them run under guards side by side.  The rest of the body was moved into the
    branches of each, nesting the body one level deeper per if."""
    s = 0.0
    for i in range(len(x)):
        t = w * x[i]
        if x[i] > 1.45:
            continue
        s += t * x[i]
        if x[i] < 0.6:
            if s > 1.0:
                y[i] = s
                continue
        t = t * t
        if t > 2.0:
            continue
        s += 0.5 * t
        if s > 3.0:
            if x[i] > 1.0:
                continue
            s = s * 0.5
        y[i] = s * x[i]
        if y[i] > 1.2:
            continue
        s -= 0.1 * t
        if x[i] < 0.55:
            continue
        s += np.sin(t)
        if s < 0.0:
            continue
        y[i] += s
        if x[i] > 1.3:
            continue
        s = s * 0.9 + t
    return s


def scaled_by(x, w):
    for i in range(len(x)):
        x[i] = x[i] * w[i]


def scaled_by_1(x, w):
    """A kernel named as adsrc named the second specialisation of scaled_by."""
    for i in range(len(x)):
        x[i] = x[i] + w[i] * w[i]


def scaled_by_2(x, w):
    """A kernel named as adsrc names the second specialisation of scaled_by now."""
    for i in range(len(x)):
        x[i] = x[i] - 0.5 * w[i] * x[i]


def specialisations_named_apart(x, y, c):
    """scaled_by called with y active and with c constant: two specialisations.  The second
    was named scaled_by_1, as the kernel scaled_by_1 is, and one definition served the calls
    of both: a wrong gradient on the Python backend, a failed build on Cython's.  Whichever
    name a specialisation takes, a kernel of the user's may have it already."""
    scaled_by(x, y)
    scaled_by_2(x, c)
    scaled_by(x, c)
    scaled_by_1(x, y)
    scaled_by_2(x, y)
    return np.dot(x, x)


def transposed_elements(A, y):
    """Elements and rows of A.T: A.T[i, j] is A[j, i].  They reached the generated code as
    written, read but never differentiated (a derivative of 0 through them, no error)."""
    s = 0.0
    for i in range(A.shape[0]):
        y[i] = 2.0 * A.T[i, 0] + A[i, 1]
        for j in range(A.shape[1]):
            s += A.T[j, i] * A[i, j] * A.T[i, j]
    y[:] = y + A.T[1, :] * A.T[:, 2]
    return s


def slices_filled_with_a_reduction(x, A, y, B):
    """A slice assigned a reduction alone: the value fills it.  The store of the total was
    left a whole-slice store, which the reverse sweep read as a scalar's (the Python backend
    raised ValueError inside the generated code, Cython's build failed)."""
    y[:] = np.sum(x * x)
    y[1:3] = x.max()
    y[:] = np.dot(y, x) + y
    y[2:] = np.sum(y * x)
    B[:, :] = np.mean(A * A)
    for i in range(A.shape[0]):
        B[i, :] = np.dot(A[i], x) + B[i, :]
    for j in range(A.shape[1]):
        B[:, j] = np.min(A[:, j] * B[:, j])


def copies_as_operands(A, B, y):
    """np.copy of an array expression as an operand of an element-wise statement: its
    elements are those of what it copies (it was refused, though np.copy is supported)."""
    B[:, :] = np.copy(A)
    B[:, :] = np.copy(B.T) * 2.0 + B
    y[1:] = np.copy(y[:-1]) * y[1:]
    y[:] = np.copy(y * B[0, :3]) + A[:, 1].copy()
    return np.sum(B * B) + np.sum(y)


def halved_and_shifted(x, k):
    x[k] = x[k] * 0.5 + 0.1
    return x[k]


def class_test_of_a_call(x, y):
    """A class test of a called kernel's value runs the call once, as Python does: a spelling
    that read its argument twice would run the call twice."""
    s = 0.0
    for i in range(len(x)):
        if math.isnan(halved_and_shifted(x, i)):
            break
        if np.isfinite(halved_and_shifted(y, i)):
            s += x[i] * y[i]
    return s
