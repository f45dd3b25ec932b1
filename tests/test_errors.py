"""Errors (docs/API.md):

* constructs outside the subset raise ``adsrc.UnsupportedError`` formatted
  ``<file>:<line>:<col>: error: <message>`` + the source line + a caret line, naming this
  file and the line of the construct, before any user array is touched;
* bad arguments raise ``adsrc.ArgumentError`` and leave every user array unchanged;
* bad ``wrt`` names and non-kernel callables raise ``adsrc.AdsrcError``.

The unsupported kernels are defined here (adsrc reads them with inspect).  The line
each error must point at carries a trailing ``# <-`` marker.
"""

import builtins
import functools
import importlib.util
import inspect
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
from scipy.linalg import expm
from scipy.sparse.linalg import spsolve

import adsrc
import adsrc.sparse

pytestmark = pytest.mark.usefixtures("backend")   # every test on both backends

# ---------------------------------------------------------------------------
# kernels outside the subset
# ---------------------------------------------------------------------------


def return_value_and_bare_return(x):
    for i in range(len(x)):
        if x[i] > 1.0:
            return x[i]  # <-
        if x[i] < 0.0:
            return


def allocation_after_an_early_return(x):
    n = len(x)
    if x[0] > 1.0:
        return x[0]
    n = n - 1
    t = np.zeros(n)  # <-
    t[:] = x[1:] * x[1:]
    return t[0]


def argument_written_then_bound(x, m):
    for k in range(m):
        x[0] = 0.5 * x[0]  # <-
        x = x * 2.0
    return np.dot(x, x)


def allocation_of_a_shape_the_loop_changes(x, m):
    s = 0.0
    for k in range(1, m):
        t = np.zeros(k)  # <-
        t[:] = x[:k]
        s += np.dot(t, t)
    return s


def write_through_index_array(x, idx, y):
    y[idx] = 2.0 * x  # <-


def add_through_index_array(x, idx, y):
    y[idx] += x  # <-


def gather_rows_of_a_matrix(x, idx, u):
    u[:] = u[idx]  # <-
    return x[0] * u[0, 0]


def diag_of_a_vector(x):
    d = np.diag(x)  # <-
    return np.sum(d)


def whole_array_comparison(x):
    big = x > 1.0  # <-
    return x[0]


def where_of_a_condition_alone(x):
    y = np.where(x > 1.0)  # <-
    return y[0]


def builtin_max_of_an_array(x):
    return max(x)  # <-


def roll_of_a_matrix(x, u):
    u[:] = np.roll(u, 1)  # <-
    return x[0] * u[0, 0]


def matrix_into_a_vector(x, u):
    x[:] = 2.0 * u  # <-
    return x[0]


def new_axis_in_a_target(x, u):
    u[:, :] = 0.0
    x[:, None] = 1.0  # <-


def new_axis_of_a_matrix(x, u):
    return np.sum(u[:, None] * x)  # <-


def outer_of_a_matrix(x, u):
    return np.sum(np.outer(u, x))  # <-


def diff_of_an_expression(x):
    return np.sum(np.diff(2.0 * x))  # <-


def full_of_an_array(x):
    return np.sum(np.full(len(x), x))  # <-


def rectangular_eye(x, u):
    return np.sum(np.eye(3, 2) * u)  # <-


def cumsum_of_a_changing_length(x, u):
    s = 0.0
    for k in range(1, 3):
        s += np.sum(u[:k, :k] * np.cumsum(x[:k]))  # <-
    return s


def cumsum_of_a_matrix(x, u):
    return np.sum(np.cumsum(u))  # <-


def max_of_an_index_array(x, idx):
    return x[0] * np.max(idx)  # <-


def sum_along_an_axis_of_a_vector(x):
    return np.sum(np.sum(x, axis=0))  # <-


def sum_along_a_variable_axis(x, u, k):
    return x[0] * np.sum(np.sum(u, axis=k))  # <-


def early_return_without_a_last_one(x):
    for i in range(len(x)):
        if x[i] > 1.0:
            return x[i]
    x[0] = 1.0  # <-


def slice_variable_step(x, k):
    x[::k] = 2.0 * x[::k]  # <-


def for_over_zip_of_a_slice(x, y):
    for a, b in zip(x, y[1:]):  # <-
        x[0] += a * b


def for_over_slice(x):
    s = 0.0
    for v in x[1:]:  # <-
        s += v
    return s


def for_over_rows(u):
    s = 0.0
    for row in u:  # <-
        s += row[0]
    return s


def list_literal(x):
    w = [1.0, 2.0]  # <-
    return x[0] * w[0]


def dict_literal(x):
    w = {"a": 1.0}  # <-
    return x[0]


def tuple_literal(x):
    w = (1.0, 2.0)  # <-
    return x[0]


def reversed_array(x):
    for v in reversed(x):  # <-
        x[0] += v


def reversed_range_variable_step(x, k):
    for i in reversed(range(0, len(x), k)):  # <-
        x[i] *= 2.0


def array_swap(x, y):
    for it in range(3):
        y[:] = 0.5 * x
        x, y = y, x  # <-


def tuple_of_unequal_length(x):
    a, b = x[0], x[1], x[2]  # <-
    return a * b


def nested_tuple_target(x):
    (a, b), c = (x[0], x[1]), x[2]  # <-
    return a * b * c


def string_constant(x):
    mode = "fast"  # <-
    return x[0]


def string_in_compare(x, t):
    s = x[0]
    if t == "up":  # <-
        s = x[1]
    return s


def try_statement(x):
    s = 0.0
    try:  # <-
        s = x[0] * x[1]
    except ZeroDivisionError:
        s = 0.0
    return s


def with_statement(x):
    s = 0.0
    with np.errstate(all="ignore"):  # <-
        s = x[0] * x[1]
    return s


def lambda_expression(x):
    sq = lambda t: t * t  # <-  # noqa: E731
    return sq(x[0])


def nested_function(x):
    def sq(t):  # <-
        return t * t
    return x[0] * x[0]


def keyword_argument(x):
    s = np.sum(x, initial=1.0)  # <-
    return s


def kept_dimension_of_a_whole_sum(x):
    s = np.sum(x, keepdims=True)  # <-
    return s[0]


def slice_of_an_expression(x):
    return np.sum((2.0 * x)[1:])  # <-


def keyword_argument_user_call(x, y):
    user_axpy(x, y, alpha=2.0)  # <-


def user_axpy(x, y, alpha):
    for i in range(len(x)):
        y[i] += alpha * x[i]


def scipy_function_by_name(x):
    s = np.sum(expm(x))  # <-
    return s


def scipy_function_through_its_module(x):
    s = np.sum(scipy.linalg.solve_triangular(x, x))  # <-
    return s


def unknown_library_function(x):
    s = np.linalg.det(x)  # <-
    return s


def unknown_builtin(x):
    s = round(x[0])  # <-
    return s


def array_alias(x, y):
    z = x  # <-
    for i in range(len(y)):
        z[i] = z[i] * y[i]
    return z[0]


def row_view_written(x, u):
    r = u[0]  # <-
    r[1] = 4.0 * u[1, 1]
    return np.sum(u * u) + x[0]


def slice_view_written(x):
    v = x[1:]  # <-
    v[0] = 3.0 * x[0]
    return np.sum(x * x)


def view_of_an_argument_written(x, u):
    d = np.diag(u)  # <-
    t = u.T
    u[0, 0] = 7.0 * u[1, 1]
    return np.dot(d, x) + t[0, 1]


def alias_through_a_tuple(x):
    p = 2.0 * x
    a, s = p, 5.0  # <-
    a[0] = s
    return np.dot(p, x)


def row_through_a_tuple(x, u):
    a, b = u[0], u[1]  # <-
    a[1] = 4.0 * b[0]
    return np.sum(u * u) + x[0]


def scaled_first_column(M, s):
    for i in range(M.shape[0]):
        M[i, 0] = M[i, 0] * s


def transpose_written_by_a_callee(u, s):
    scaled_first_column(u.T, s)  # <-
    return u[0, 0]


def shape_of_a_transpose(A, x):
    for i in range(A.T.shape[0]):  # <-
        x[i] = A[0, i]


def column_of_a_transpose(A, x):
    for i in range(len(x)):
        x[i] = np.dot(A.T[i], x)  # <-


def attribute_method(x):
    s = x.argmax()  # <-
    return s


def array_method_writing(x):
    x.fill(0.0)  # <-
    return np.sum(x)


def integer_local_array(x):
    t = np.zeros(len(x), dtype=np.int64)  # <-
    return x[0]


def allocation_order(x):
    t = np.zeros(len(x), order="F")  # <-
    return x[0]


def attribute_transpose(u, v):
    v[:, :] = (u + u).T  # <-


def reserved_bar_local(x):
    x_bar = 2.0 * x[0]  # <-
    return x_bar


def reserved_underscore_local(x):
    _tmp = x[0] * x[1]  # <-
    return _tmp


def reserved_bar_argument(x, y_bar):  # <-
    return x[0] * y_bar


def local_named_as_a_c_function(x):
    exp = x[0] * 2.0  # <-
    return math.exp(exp)


def local_named_as_a_cython_word(x):
    DEF = x[0] * 2.0  # <-
    return DEF


def parameter_named_np(x, np):  # <-
    t = np * x
    return t[0]


def local_named_as_a_builtin_of_the_generated_code(x, y):
    range = 2.0  # <-
    y[:] = range * x        # a loop over range(...) in the generated code
    return y[0]


def local_named_as_a_called_kernel_function(x, y):
    helper__fwd = 2.0  # <-
    y[:] = x
    user_axpy(y, x, helper__fwd)
    return y[0]


def nested_function_in_a_kernel_returning_nothing(x, y):
    def twice(v):  # <-
        return 2.0 * v
    y[0] = twice(x[0])


def parameter_named_out(x, out):  # <-
    out[0] = x[0]


def star_args(x, *rest):  # <-
    return x[0]


def default_argument(x, alpha=2.0):  # <-
    return x[0] * alpha


def keyword_only_argument(x, *, alpha):  # <-
    return x[0] * alpha


def chained_assignment(x):
    a = b = x[0]  # <-
    return a * b


def float_index(x):
    n = len(x)
    s = x[n / 2]  # <-
    return s


def float_index_variable(x, t):
    s = x[t]  # <-
    return s


def while_else(x):
    i = 0
    s = 0.0
    while i < len(x):  # <-
        s += x[i]
        i += 1
    else:
        s = -s
    return s


def for_else(x):
    s = 0.0
    for i in range(len(x)):  # <-
        s += x[i]
    else:
        s = -s
    return s


def print_call(x):
    print(x[0])  # <-
    return x[0]


def global_statement(x):
    global HALF  # <-
    return x[0]


def counter_bound_in_its_loop(x):
    s = 0.0
    for i in range(len(x)):
        s += x[i] * x[i]
        i = i + 1  # <-
        if i < len(x):
            s += x[i]
    return s


def counter_reused_by_an_inner_loop(x):
    s = 0.0
    for i in range(3):
        for i in range(len(x)):  # <-
            s += x[i] * x[i]
        s += x[i]
    return s


def counter_of_enumerate_incremented(x):
    s = 0.0
    for i, v in enumerate(x):
        if v > 0.0:
            i += 1  # <-
        s += v * i
    return s


def power_into_an_out_array(x, y):
    return np.sum(np.power(x, 2.0, y)) + np.sum(y * x)  # <-


def root_into_an_out_array(x, y):
    y[0] = 2.0 * x[0]
    z = np.sqrt(x, y)  # <-
    return np.sum(z * x)


def power_with_a_modulus(x, k):
    return x[0] * pow(k, 2, 5)  # <-


def logarithm_to_a_base(x):
    return math.log(x[0], 2.0)  # <-


def matrix_defined_in_a_branch(data, indices, indptr, x, c):
    if c > 0:
        A = sp.csr_matrix((data, indices, indptr), shape=(3, 3))
    return np.dot(x, A @ x)  # <-


def matrix_read_for_some_values(data, indices, indptr, x, c):
    if c > 0:
        A = sp.csr_matrix((data, indices, indptr), shape=(3, 3))
    y = x if c == 0 else A @ x  # <-
    return np.dot(x, y)


def _tridiagonal():
    matrix = sp.diags([-1.0, 2.5, -1.0], [-1, 0, 1], shape=(3, 3), format="csr")
    return matrix.data.copy(), matrix.indices, matrix.indptr, np.ones(3), 0


def norm_with_an_order(x):
    return np.linalg.norm(x, 1)  # <-


def factor_of_a_split_call(u):
    return np.sum(np.linalg.qr(u)[0])  # <-


def rows_swapped_through_views(x, u):
    u[0, :], u[1, :] = u[1, :], u[0, :]  # <-
    return np.sum(u[0, :] * x[0])


def solve_of_several_right_hand_sides(u, v):
    v[:, :] = np.linalg.solve(u, v)  # <-


def sparse_solve_of_several_right_hand_sides(data, indices, indptr, v):
    A = sp.csr_matrix((data, indices, indptr), shape=(2, 2))
    v[:, :] = spsolve(A, v)  # <-


def sparse_product_of_a_matrix(data, indices, indptr, v):
    v[:, :] = adsrc.sparse.matvec(data, indices, indptr, v)  # <-


def norm_of_a_matrix(u):
    return np.linalg.norm(u)  # <-


def or_of_numbers(x):
    a = x[0] or x[1]  # <-
    if x[0] or x[1] > 2.0:      # in a condition, numbers are taken by their truth
        a = 2.0 * a
    return a * 2.0


def range_of_floats(x):
    s = 0.0
    for i in range(0.0, 3.0):  # <-
        s += x[0]
    return s


def user_sq(x, k):
    return x[k] * x[k]


def call_in_and_operand(x, k):
    # adsrc computes calls before their statement; Python calls user_sq only when k < len(x)
    s = 0.0
    if k < len(x) and user_sq(x, k) > 1.0:  # <-
        s = x[0]
    return s


def bump_first(x):
    x[0] = 2.0 * x[0]
    return x[0]


def call_writes_what_the_expression_reads(x):
    # Python reads x[1] before bump_first doubles x[0]... and x[0] after it: computing the
    # call before the statement would change the value
    s = x[0] * bump_first(x) + x[1]  # <-
    return s


def reduction_in_conditional_expression(x, t):
    s = x[0] if t > 0.0 else np.sum(x)  # <-
    return s


# (kernel, expected fragment of the message or None, token the caret must point at, args)
def _x(n=4):
    return (np.linspace(0.5, 1.5, n),)


def _xy(n=4):
    return (np.linspace(0.5, 1.5, n), np.linspace(1.0, 2.0, n))


def _indexed():
    return (np.linspace(0.5, 1.5, 4), np.array([0, 1, 1, 2]), np.zeros(4))


UNSUPPORTED = [
    (call_in_and_operand, "'and'/'or'", "user_sq", lambda: (*_x(), 2)),
    (call_writes_what_the_expression_reads, "writes the array 'x'", "bump_first", _x),
    (reduction_in_conditional_expression, "'a if c else b'", "np.sum", lambda: (*_x(), 1.0)),
    (return_value_and_bare_return, "'return' and 'return value' are mixed", "return x[i]",
     _x),
    (allocation_after_an_early_return, "may return early", "t = np.zeros", _x),
    (argument_written_then_bound, "binds to a new array (line", "x[0] =", lambda: (*_x(), 2)),
    (allocation_of_a_shape_the_loop_changes, "with a shape that 'k' changes there",
     "t = np.zeros", lambda: (*_x(), 3)),
    (early_return_without_a_last_one, "must end with a 'return value'", "x[0] = 1.0", _x),
    (write_through_index_array, "NumPy keeps one of the values", "y[idx]", _indexed),
    (add_through_index_array, "NumPy keeps one of the values", "y[idx]", _indexed),
    (gather_rows_of_a_matrix, "a 1-D integer array indexing a 1-D array", "u[idx]",
     lambda: (*_x(), np.array([0, 1, 1]), np.ones((3, 2)))),
    (diag_of_a_vector, "not building a matrix from a vector", "np.diag", _x),
    (whole_array_comparison, "only as the condition of np.where", "x > 1.0", _x),
    (where_of_a_condition_alone, "np.where takes 3 arguments", "np.where", _x),
    (builtin_max_of_an_array, "write np.max(x)", "max", _x),
    (sum_along_an_axis_of_a_vector, "is supported for a 2-D array u", "np.sum(x", _x),
    (sum_along_a_variable_axis, "takes a constant axis", "np.sum(u",
     lambda: (*_x(), np.ones((3, 2)), 1)),
    (roll_of_a_matrix, "np.roll is supported on a 1-D array", "np.roll",
     lambda: (*_x(), np.ones((3, 2)))),
    (matrix_into_a_vector, "storing a 2-D array into 1-D 'x[:]'", "x[:]",
     lambda: (*_x(3), np.ones((3, 3)))),
    (new_axis_in_a_target, "a new axis (None) in an assignment's target", "x[:, None]",
     lambda: (*_x(3), np.ones((3, 3)))),
    (new_axis_of_a_matrix, "supported on a 1-D array as x[:, None]", "u[:, None]",
     lambda: (*_x(3), np.ones((3, 3)))),
    (outer_of_a_matrix, "np.outer(u, v) is supported for 1-D arrays", "np.outer",
     lambda: (*_x(3), np.ones((3, 3)))),
    (diff_of_an_expression, "np.diff is supported on a 1-D float array named by the kernel",
     "np.diff", _x),
    (full_of_an_array, "np.full(shape, value) takes the shape and a scalar value", "np.full",
     _x),
    (rectangular_eye, "np.eye(n) takes the number of rows", "np.eye",
     lambda: (*_x(), np.ones((3, 2)))),
    (cumsum_of_a_changing_length, "allocate one at the top level with its largest length",
     "np.cumsum", lambda: (*_x(3), np.ones((3, 3)))),
    (cumsum_of_a_matrix, "np.cumsum is supported for one 1-D float array (no axis)",
     "np.cumsum", lambda: (*_x(3), np.ones((3, 3)))),
    (max_of_an_index_array, "np.max is supported on float arrays", "np.max",
     lambda: (*_x(), np.array([0, 2, 1]))),
    (for_over_slice, "a 1-D array ('for v in x')", "x[1:]", _x),
    (for_over_zip_of_a_slice, "over 1-D arrays given by name", "zip", _xy),
    (slice_variable_step, "constant, non-zero step", "k]", lambda: (*_x(), 2)),
    (for_over_rows, "over its rows", "u", lambda: (np.ones((3, 2)),)),
    (list_literal, None, "[", _x),
    (dict_literal, None, "{", _x),
    (tuple_literal, None, "(1.0", _x),
    (array_swap, "a tuple assignment of the argument 'x' to another name", "x, y", _xy),
    (tuple_of_unequal_length, "as many values as targets", "a, b", _x),
    (nested_tuple_target, "no nesting", "(a, b)", _x),
    (reversed_array, "only as 'reversed(range(...))'", "reversed", _x),
    (reversed_range_variable_step, "constant, non-zero step", "reversed",
     lambda: (*_x(), 2)),
    (string_constant, None, '"fast"', _x),
    (string_in_compare, None, '"up"', lambda: (*_x(), 1.0)),
    (try_statement, None, "try", _x),
    (with_statement, None, "with", _x),
    (lambda_expression, None, "lambda", _x),
    (nested_function, None, "def sq", _x),
    (keyword_argument, "keyword", "np.sum", _x),
    (kept_dimension_of_a_whole_sum, "keepdims=True is supported along a constant axis",
     "np.sum", _x),
    (slice_of_an_expression, "new axes of expressions", "(2.0 * x)", _x),
    (keyword_argument_user_call, "keyword", "user_axpy", _xy),
    (unknown_library_function, "no derivative rule for numpy.linalg.det", "np.linalg.det",
     _x),
    # SciPy's Python functions are library code, not kernels whose source adsrc would read
    (scipy_function_by_name, "no derivative rule for scipy.linalg._matfuncs.expm", "expm",
     lambda: (np.eye(2),)),
    (scipy_function_through_its_module, "no derivative rule for "
     "scipy.linalg._basic.solve_triangular", "scipy.linalg.solve_triangular",
     lambda: (np.eye(2),)),
    (unknown_builtin, "no derivative rule", "round", _x),
    (array_alias, "'z' is written in place (line", "z = x", _xy),
    (row_view_written, "'r = u[0, :]' makes 'r' a view of the elements of 'u' in NumPy, and "
     "'r' is written in place (line", "r = u[0]", lambda: (*_x(2), np.ones((2, 2)))),
    (slice_view_written, "'v = x[1:]' makes 'v' a view of the elements of 'x'", "v = x[1:]",
     _x),
    (view_of_an_argument_written, "'d = np.diag(u)' makes 'd' a view of the elements of 'u' "
     "in NumPy, and 'u' is written in place", "d = np.diag(u)",
     lambda: (*_x(2), np.ones((2, 2)))),
    (alias_through_a_tuple, "'a = p' makes 'a' a second name for the array of 'p' in NumPy",
     "a, s = p, 5.0", _x),
    (row_through_a_tuple, "'a = u[0, :]' makes 'a' a view of the elements of 'u'",
     "a, b = u[0], u[1]", lambda: (*_x(2), np.ones((2, 2)))),
    (transpose_written_by_a_callee, "the argument 'u.T' is a view of the elements of 'u' in "
                                    "NumPy, and the call writes it in place", "u.T",
     lambda: (np.ones((2, 2)), 0.5)),
    (shape_of_a_transpose, "'.shape' is read of a name only, not of 'A.T' ('A.T.shape[0]' "
                           "is 'A.shape[1]')", "A.T.shape", lambda: (np.ones((2, 2)), np.ones(2))),
    (column_of_a_transpose, "a subscript of '.T' takes two indices, one of them not a "
                            "slice", "A.T[i]", lambda: (np.ones((2, 2)), np.ones(2))),
    (attribute_method, "the method 'argmax' of an array is not supported in a kernel",
     "x.argmax", _x),
    (array_method_writing, "write what it does with stores and NumPy's functions, as "
                           "'r[:] = 0.0' for 'r.fill(0.0)'", "x.fill", _x),
    (integer_local_array, "local arrays are float64", "np.int64", _x),
    (allocation_order, "keyword arguments", "np.zeros", _x),
    (attribute_transpose, "'.T' is read of a name only, not of 'u + u'", "(u + u).T",
     lambda: (np.ones((2, 2)), np.ones((2, 2)))),
    (reserved_bar_local, "x_bar", "x_bar", _x),
    (reserved_underscore_local, "_tmp", "_tmp", _x),
    (reserved_bar_argument, "y_bar", "y_bar", lambda: (*_x(), 1.0)),
    # the generated code's own names: the Cython build failed (a C exp called on a double,
    # 'Empty declarator'), or np.empty(...) ran on the user's array
    (local_named_as_a_c_function, "the name 'exp' is taken by the code adsrc generates",
     "exp =", _x),
    (local_named_as_a_cython_word, "the name 'DEF' is taken", "DEF =", _x),
    (parameter_named_np, "the name 'np' is taken", "np)", _xy),
    (local_named_as_a_builtin_of_the_generated_code, "the name 'range' is taken by the code "
     "adsrc generates", "range =", _xy),
    (local_named_as_a_called_kernel_function, "names holding '__' are reserved",
     "helper__fwd =", _xy),
    # its return was taken for an early return of the kernel, refused at the wrong line
    (nested_function_in_a_kernel_returning_nothing, "the function 'twice' is defined inside "
     "the kernel", "def twice", _xy),
    # out_bar= is the return value's adjoint: the array 'out' could not be given its own
    (parameter_named_out, "the parameter name 'out' is reserved", "out)", _xy),
    (star_args, None, "def", lambda: (*_x(), 1.0)),
    (default_argument, None, "def", lambda: (*_x(), 1.0)),
    (keyword_only_argument, None, "def", lambda: (*_x(), 1.0)),
    (chained_assignment, "chained", "a = b", _x),
    (float_index, "integer", "n / 2", _x),
    (float_index_variable, "integer", "t]", lambda: (*_x(), 1.0)),
    (while_else, "else", "while", _x),
    (for_else, "else", "for", _x),
    (print_call, None, "print", _x),
    (global_statement, None, "global", _x),
    (range_of_floats, "integer", "0.0", _x),
    (matrix_defined_in_a_branch, "'A' is read here, where a path comes before its "
     "definition", "return", _tridiagonal),
    # read only when c != 0, where Python raises; the fence reads its arrays (no flag follows
    # a matrix), so adsrc ran it
    (matrix_read_for_some_values, "'A' is read here, where a path comes before its "
     "definition", "y = x", _tridiagonal),
    (power_into_an_out_array, "numpy.power is called with 3 arguments: it takes 2, then its "
     "out array", "np.power", _xy),
    (root_into_an_out_array, "numpy.sqrt is called with 2 arguments: it takes 1, then its out "
     "array", "np.sqrt", _xy),
    (power_with_a_modulus, "pow is called with 3 argument(s); adsrc differentiates it with 2",
     "pow", lambda: (*_x(), 3)),
    (logarithm_to_a_base, "write math.log(x) / math.log(b)", "math.log", _x),
    (norm_with_an_order, "numpy.linalg.norm is called here with 2 argument(s); its "
     "derivative rule takes 1 (x)", "np.linalg.norm", _x),
    (factor_of_a_split_call, "numpy.linalg.qr returns several arrays: assign them to as many "
     "names", "np.linalg.qr", lambda: (np.eye(3),)),
    (rows_swapped_through_views, "the value 'u[1, :]' of this tuple assignment is a view of "
     "the elements of 'u'", "u[0, :], u[1, :]", lambda: (*_x(2), np.ones((2, 2)))),
    (solve_of_several_right_hand_sides, "numpy.linalg.solve: adsrc's derivative rule takes "
     "'v' as float64[:], and it is float64[:,:] here", "v)",
     lambda: (np.eye(2) * 2.0, np.ones((2, 2)))),
    # the sparse rules solve and multiply one vector; their backward parts failed after the
    # forward sweep had run and written v
    (sparse_solve_of_several_right_hand_sides, "adsrc.rules.sparse.spsolve: adsrc's derivative "
     "rule takes 'v' as float64[:], and it is float64[:,:] here", "v)", lambda: (
         np.array([2.0, 3.0]), np.array([0, 1], np.int32), np.array([0, 1, 2], np.int32),
         np.ones((2, 2)))),
    (sparse_product_of_a_matrix, "adsrc.rules.sparse.matvec: adsrc's derivative rule takes "
     "'v' as float64[:], and it is float64[:,:] here", "v)", lambda: (
         np.array([2.0, 3.0]), np.array([0, 1], np.int32), np.array([0, 1, 2], np.int32),
         np.ones((2, 2)))),
    (norm_of_a_matrix, "numpy.linalg.norm: adsrc's derivative rule takes 'u' as "
     "float64[:], and it is float64[:,:] here", "u)", lambda: (np.eye(2),)),
    (or_of_numbers, "the value of 'or' of numbers is one of its operands", "x[0] or x[1]", _x),
    (counter_bound_in_its_loop, "'i' is the counter of an enclosing for loop", "i = i + 1",
     _x),
    (counter_reused_by_an_inner_loop, "'i' is the counter of an enclosing for loop",
     "i in range(len(x))", _x),
    (counter_of_enumerate_incremented, "'i' is the counter of an enclosing for loop", "i += 1",
     _x),
]

THIS_FILE = inspect.getsourcefile(_x)
with open(THIS_FILE) as _fh:
    FILE_LINES = _fh.read().splitlines()


def _marked_line(kernel):
    lines, first = inspect.getsourcelines(kernel)
    marked = [first + k for k, text in enumerate(lines) if "# <-" in text]
    assert len(marked) == 1, kernel.__name__
    return marked[0]


def _copies(args):
    return [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]


def _assert_unchanged(before, after):
    for b, a in zip(before, after):
        if isinstance(b, np.ndarray):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype


@pytest.mark.parametrize("kernel,fragment,token,make", UNSUPPORTED,
                         ids=[c[0].__name__ for c in UNSUPPORTED])
def test_unsupported_construct(kernel, fragment, token, make):
    args = make()
    before = _copies(args)
    wrt = 0
    with pytest.raises(adsrc.UnsupportedError) as info:
        f = adsrc.differentiate(kernel, wrt=wrt)
        f.adjoint(*args, **{p + "_bar": np.ones_like(a) for p, a in zip(
            inspect.signature(kernel).parameters, args) if isinstance(a, np.ndarray)
            and p in ("y", "v")})
    _assert_unchanged(before, args)
    message = str(info.value)
    lines = message.split("\n")
    line = _marked_line(kernel)
    head = re.match(r"^(.*):(\d+):(\d+): error: (.+)$", lines[0])
    assert head, f"first line not 'file:line:col: error: message': {lines[0]!r}"
    assert head.group(1) == THIS_FILE, head.group(1)
    assert int(head.group(2)) == line, (f"points at line {head.group(2)}, the construct is on "
                                        f"line {line}:\n{message}")
    col = int(head.group(3))
    text = FILE_LINES[line - 1]
    assert len(lines) >= 3, message
    assert lines[1] == "    " + text.rstrip(), f"source line: {lines[1]!r}"
    caret = lines[2]
    assert caret.strip() == "^", f"caret line: {caret!r}"
    assert caret.index("^") == 4 + col - 1, f"caret not under column {col}:\n{message}"
    assert text[col - 1:].startswith(token), (f"column {col} points at {text[col - 1:]!r}, "
                                              f"expected {token!r}")
    if fragment is not None:
        assert fragment in head.group(4), head.group(4)


# ---------------------------------------------------------------------------
# bad arguments
# ---------------------------------------------------------------------------


def csr_relax(indptr, indices, data, x, b, alpha):
    """x[i] += alpha * (b[i] - (A x)[i]), one in-place sweep."""
    for i in range(len(b)):
        acc = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            acc += data[k] * x[indices[k]]
        x[i] += alpha * (b[i] - acc)


def scaled_norm(x, n):
    s = 0.0
    for i in range(n):
        s += x[i] * x[i]
    return s


def _csr_args(int_dtype=np.int64):
    indptr = np.array([0, 2, 5, 8, 10], dtype=int_dtype)
    indices = np.array([0, 1, 0, 1, 2, 1, 2, 3, 2, 3], dtype=int_dtype)
    data = np.array([4.0, -1.0, -1.0, 4.0, -1.0, -1.0, 4.0, -1.0, -1.0, 4.0])
    return [indptr, indices, data, np.linspace(0.1, 0.4, 4), np.ones(4), 0.7]


def _relax(wrt=("data", "b"), outputs=("x",)):
    return adsrc.differentiate(csr_relax, wrt=wrt, outputs=outputs)


def _expect_argument_error(f, args, bars):
    arrays = list(args) + list(bars.values())
    before = _copies(arrays)
    with pytest.raises(adsrc.ArgumentError) as info:
        f.adjoint(*args, **bars)
    assert isinstance(info.value, adsrc.AdsrcError)
    assert isinstance(info.value, (TypeError, ValueError))
    _assert_unchanged(before, arrays)
    return str(info.value)


def test_good_call_works():
    """the baseline the bad calls below deviate from."""
    args = _csr_args()
    data_bar, b_bar = _relax().adjoint(*args, x_bar=np.ones(4))
    assert data_bar.shape == (10,) and b_bar.shape == (4,)


@pytest.mark.parametrize("position", [2, 3, 4])
def test_float32_array(position):
    args = _csr_args()
    args[position] = args[position].astype(np.float32)
    _expect_argument_error(_relax(), args, {"x_bar": np.ones(4)})


def test_float32_scalar():
    """A float32 alpha would make Python's run of the kernel, and check_grads' finite
    differences, compute in single precision."""
    args = _csr_args()
    args[5] = np.float32(0.7)
    message = _expect_argument_error(_relax(wrt=("data", "b", "alpha")), args,
                                     {"x_bar": np.ones(4)})
    assert "floats must be Python floats or np.float64" in message and "float32" in message


@pytest.mark.parametrize("dtype", [np.int16, np.uint32, np.float64])
def test_index_array_dtype(dtype):
    args = _csr_args()
    args[1] = args[1].astype(dtype)
    _expect_argument_error(_relax(), args, {"x_bar": np.ones(4)})


def test_three_dimensional_array():
    args = _csr_args()
    args[4] = np.ones((4, 1, 1))
    _expect_argument_error(_relax(), args, {"x_bar": np.ones(4)})


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("subclass", ["matrix", "masked"])
def test_ndarray_subclasses_whose_operations_differ(subclass):
    """np.matrix multiplies with '*' and a masked array skips what it masks, where adsrc's code
    computes as for an ndarray: the kernel run by Python would give other numbers."""
    args = _csr_args()
    args[4] = np.asmatrix(args[4]) if subclass == "matrix" \
        else np.ma.masked_array(args[4], mask=[0, 1, 0, 0])
    message = _expect_argument_error(_relax(), args, {"x_bar": np.ones(4)})
    assert "argument 'b'" in message and "subclass of NumPy's ndarray" in message


def test_a_memory_mapped_array_is_an_array(tmp_path):
    """np.memmap subclasses ndarray without changing what it computes."""
    args = _csr_args()
    mapped = np.memmap(tmp_path / "b.dat", dtype=np.float64, mode="w+", shape=(4,))
    mapped[:] = args[4]
    want = _relax().adjoint(*_copies(args), x_bar=np.ones(4))
    args[4] = mapped
    got = _relax().adjoint(*args, x_bar=np.ones(4))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


USUAL_VALUES = [np.zeros(3), np.zeros((2, 3)), np.zeros(3, dtype=np.int32),
                np.zeros((2, 2), dtype=np.int64), 1.5, 2, True, np.float64(1.5),
                np.int32(2), np.int64(2), np.bool_(True)]
OTHER_VALUES = [np.zeros(3, dtype=np.float32), np.float32(1.5), np.zeros((2, 2, 2)), np.zeros(()),
                np.zeros(3).view(np.recarray), np.zeros(3, dtype=">f8"), np.int16(2), "x", None]


@pytest.mark.parametrize("value", USUAL_VALUES + OTHER_VALUES, ids=repr)
def test_the_table_of_usual_types_agrees_with_the_general_rules(value):
    """Every call types its arguments from a table first (usual_types): the usual values must
    be found there, and any value the table types must get the type the general rules
    (type_of_value) give it; the others are left to the general rules."""
    from adsrc.analyses.types import type_of_value, usual_types

    try:
        general = type_of_value(value, "v")
    except adsrc.ArgumentError:
        general = None
    found = usual_types([value])
    if any(value is usual for usual in USUAL_VALUES):
        assert found == (general,) and general is not None
    else:
        assert found in (None, (general,))


@pytest.mark.parametrize("count", [5, 7, 0])
def test_wrong_number_of_arguments(count):
    args = _csr_args()
    args = (args + [1.0])[:count]
    _expect_argument_error(_relax(), args, {"x_bar": np.ones(4)})


def test_a_written_array_whose_elements_share_memory(backend):
    """x viewed with a stride of 0 is one value under six names; adsrc's code takes the
    elements of an array it writes to be distinct (the compiled backend refuses any array
    that is not C-contiguous).  A view with gaps between its elements is fine."""
    from numpy.lib.stride_tricks import as_strided
    args = _csr_args()
    args[3] = as_strided(np.zeros(1), shape=(4,), strides=(0,))
    message = _expect_argument_error(_relax(), args, {"x_bar": np.ones(4)})
    if backend == "python":
        assert "elements of 'x' share memory" in message
        args = _csr_args()
        spaced = np.zeros(8)
        spaced[::2] = args[3]
        want = _relax().adjoint(*_copies(args), x_bar=np.ones(4))
        args[3] = spaced[::2]
        got = _relax().adjoint(*args, x_bar=np.ones(4))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-15)


def repeated_sum(x, y, sweeps):
    for it in range(sweeps):  # <-
        y[:] = y + x


def halved_repeated_sum(x, y, sweeps):
    for it in range(sweeps / 2):  # <-
        y[:] = y + x


@pytest.mark.parametrize("kernel,sweeps,why", [
    (repeated_sum, 2.0, "the argument 'sweeps' is a float in this call; pass an int"),
    (halved_repeated_sum, 4, "in Python, '/' of ints and an int to a power that may be "
                             "negative, such as 2 ** k, give floats")])
def test_a_float_where_an_int_is_needed_says_where_it_came_from(kernel, sweeps, why):
    place = f"test_errors.py:{_marked_line(kernel)}:"
    with pytest.raises(adsrc.ArgumentError, match=re.escape(place) + ".*" + re.escape(
            "expected an integer here, got float" + (": " if sweeps == 2.0 else " (") + why)):
        adsrc.differentiate(kernel, wrt="x", outputs="y").adjoint(
            np.ones(3), np.zeros(3), sweeps, y_bar=np.ones(3))


@pytest.mark.parametrize("sweeps", [2**62 + 1, 2**63, np.uint64(2**64 - 1), -2**63],
                         ids=["2**62+1", "2**63", "uint64", "-2**63"])
def test_an_int_beyond_62_bits_is_refused_naming_the_argument(backend, sweeps):
    """The compiled code holds an int argument in a C integer: Cython raised its own
    OverflowError, naming no argument, for 2**63; -2**63 ran the reverse sweep's loop from
    sweeps - 1, which wraps round (no end in sight); and the Python backend took what the
    compiled one refuses.  Both refuse beyond ±2**62, in every kind of call, before anything
    runs."""
    f = adsrc.differentiate(repeated_sum, wrt="x", outputs="y")
    x, y = np.ones(3), np.zeros(3)
    calls = [lambda: f.adjoint(x, y, sweeps, y_bar=np.ones(3)),
             lambda: f.tangent(x, y, sweeps, x_dot=np.ones(3)),
             lambda: f.primal(x, y, sweeps)]
    for call in calls:
        with pytest.raises(adsrc.ArgumentError, match=re.escape(
                f"repeated_sum: argument 'sweeps' is {int(sweeps)}, beyond the ints")):
            call()
        assert not y.any()
    # the least int taken runs the loop no trip, forwards and backwards
    (x_bar,) = f.adjoint(x, y, -2**62, y_bar=np.ones(3))
    np.testing.assert_array_equal(x_bar, np.zeros(3))
    assert not y.any()


def test_a_numpy_bool_where_an_int_is_needed_is_refused(backend):
    """np.bool_ is typed as an int, but Cython's conversion to a C integer refuses it (a raw
    TypeError from the compiled backend, where the Python one ran): refused on both, naming
    the argument.  A Python bool is an int, and taken."""
    f = adsrc.differentiate(repeated_sum, wrt="x", outputs="y")
    x, y = np.ones(3), np.zeros(3)
    for call in (lambda: f.adjoint(x, y, np.bool_(True), y_bar=np.ones(3)),
                 lambda: f.primal(x, y, np.bool_(True))):
        with pytest.raises(adsrc.ArgumentError, match="argument 'sweeps' is a NumPy bool"):
            call()
        assert not y.any()
    (x_bar,) = f.adjoint(x, y, True, y_bar=np.ones(3))
    np.testing.assert_array_equal(y, np.ones(3))            # one sweep: y = y + x
    np.testing.assert_array_equal(x_bar, np.ones(3))


def test_a_bar_of_none():
    """x_bar=None is not x_bar left out (which, for an output, is refused too): it read as
    zeros, and every gradient came back zero."""
    message = _expect_argument_error(_relax(), _csr_args(), {"x_bar": None})
    assert "x_bar=None" in message
    _expect_argument_error(_relax(), _csr_args(), {"x_bar": np.ones(4), "b_bar": None})


def test_bar_of_wrong_shape():
    _expect_argument_error(_relax(), _csr_args(), {"x_bar": np.ones(5)})
    _expect_argument_error(_relax(), _csr_args(), {"x_bar": np.ones(4), "data_bar": np.ones(9)})
    _expect_argument_error(_relax(), _csr_args(), {"x_bar": np.ones((4, 1))})


@pytest.mark.parametrize("bad", [np.ones(4, dtype=np.float32), np.ones(4, dtype=np.int64),
                                 [1.0, 1.0, 1.0, 1.0], 1.0],
                         ids=["float32", "int64", "list", "scalar"])
def test_bar_of_wrong_dtype(bad):
    _expect_argument_error(_relax(), _csr_args(), {"x_bar": bad})
    _expect_argument_error(_relax(), _csr_args(), {"x_bar": np.ones(4), "b_bar": bad})


def test_bar_for_a_constant_argument():
    msg = _expect_argument_error(_relax(), _csr_args(), {"x_bar": np.ones(4),
                                                         "indices_bar": np.ones(10)})
    assert "indices_bar" in msg
    only_b = _relax(wrt=("b",))
    msg = _expect_argument_error(only_b, _csr_args(), {"x_bar": np.ones(4),
                                                       "data_bar": np.ones(10)})
    assert "data_bar" in msg
    _expect_argument_error(only_b, _csr_args(), {"x_bar": np.ones(4), "alpha_bar": 1.0})
    _expect_argument_error(only_b, _csr_args(), {"x_bar": np.ones(4), "nonsense_bar": np.ones(4)})


def test_missing_bar_of_an_output_array():
    msg = _expect_argument_error(_relax(), _csr_args(), {})
    assert "x_bar" in msg
    _expect_argument_error(_relax(), _csr_args(), {"data_bar": np.zeros(10)})
    # a misspelt seed is named, with the keys the call takes
    msg = _expect_argument_error(_relax(), _csr_args(), {"y_bar": np.ones(4)})
    assert "unexpected adjoint 'y_bar'" in msg and "x_bar" in msg


def test_same_array_twice_when_one_is_written():
    args = _csr_args()
    args[4] = args[3]  # x passed as both x and b
    _expect_argument_error(_relax(), args, {"x_bar": np.ones(4)})
    args = _csr_args()
    args[4] = args[3][:]  # a view of x
    _expect_argument_error(_relax(), args, {"x_bar": np.ones(4)})


def reversed_into(x, y):
    y[:] = x[::-1]


def test_the_compiled_primal_refuses_the_same_array_twice(backend):
    """NumPy reads all of 'x[::-1]' before it stores into y; the compiled loop, into the
    same array, would read values it had stored.  The Python backend's primal is the function
    itself, which is right with any arguments."""
    f = adsrc.differentiate(reversed_into, wrt="x", outputs="y")
    a = np.arange(5.0)
    if backend == "python":
        f.primal(a, a)
        np.testing.assert_array_equal(a, [4.0, 3.0, 2.0, 1.0, 0.0])     # as NumPy does it
        return
    with pytest.raises(adsrc.ArgumentError, match="'x' and 'y' share memory"):
        f.primal(a, a)
    np.testing.assert_array_equal(a, np.arange(5.0))
    b = np.zeros(5)
    f.primal(a, b)
    np.testing.assert_array_equal(b, a[::-1])


def dot2(x, y):
    s = 0.0
    for i in range(len(x)):
        s += x[i] * y[i]
    return s


def test_same_read_only_array_twice_is_fine():
    """sharing memory is an error only when one of the two arrays is written."""
    x = np.linspace(0.5, 1.5, 3)
    gx, gy = adsrc.grad(dot2, wrt=("x", "y"))(x, x)
    np.testing.assert_allclose(gx, x)
    np.testing.assert_allclose(gy, x)


def test_bar_aliasing_a_primal_array():
    args = _csr_args()
    _expect_argument_error(_relax(), args, {"x_bar": args[3]})
    args = _csr_args()
    _expect_argument_error(_relax(), args, {"x_bar": np.ones(4), "b_bar": args[4]})
    args = _csr_args()
    _expect_argument_error(_relax(), args, {"x_bar": np.ones(4), "data_bar": args[2]})
    args = _csr_args()
    shared = np.ones(4)
    _expect_argument_error(_relax(), args, {"x_bar": shared, "b_bar": shared})


def test_views_and_buffers_sharing_memory_with_a_written_array():
    """Overlapping views of one array, and arrays over one buffer that no array owns, are
    caught; views of one array that do not overlap are fine."""
    whole = np.zeros(12)
    args = _csr_args()
    _expect_argument_error(_relax(), args, {"x_bar": whole[:4], "b_bar": whole[2:6]})
    buffer = bytearray(8 * 8)
    args = _csr_args()
    _expect_argument_error(_relax(), args, {"x_bar": np.frombuffer(buffer)[:4],
                                            "b_bar": np.frombuffer(buffer)[3:7]})
    args = _csr_args()
    disjoint = {"x_bar": whole[:4], "b_bar": whole[4:8], "data_bar": np.zeros(len(args[2]))}
    _relax().adjoint(*args, **disjoint)


@pytest.mark.parametrize("wrt", ["indices", "indptr", ("data", "indices")])
def test_wrt_an_integer_array(wrt):
    _expect_argument_error(_relax(wrt=wrt), _csr_args(), {"x_bar": np.ones(4)})


def test_wrt_an_integer_scalar():
    """n is an int used as a loop bound.  adsrc accepts a Python int for a float wrt scalar
    (it is converted to float), so the kernel then fails to type: any AdsrcError will do,
    raised before the array is touched."""
    f = adsrc.differentiate(scaled_norm, wrt=("x", "n"))
    x = np.ones(3)
    before = x.copy()
    with pytest.raises(adsrc.AdsrcError):
        f.adjoint(x, 3)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("wrt", ["nothere", ("data", "nothere"), 6, -7])
def test_wrt_names_a_nonexistent_argument(wrt):
    with pytest.raises(adsrc.AdsrcError):
        adsrc.differentiate(csr_relax, wrt=wrt, outputs=("x",))
    with pytest.raises(adsrc.AdsrcError):
        adsrc.differentiate(wrt=wrt, outputs=("x",))(csr_relax)


def test_outputs_names_a_nonexistent_argument():
    with pytest.raises(adsrc.AdsrcError):
        adsrc.differentiate(csr_relax, wrt="data", outputs=("y",))


@pytest.mark.parametrize("output, kind", [("indices", "int64\\[:\\]"), ("alpha", "float")])
def test_outputs_names_an_argument_that_is_no_float_array(output, kind):
    """An index array or a scalar (which the kernel cannot change for its caller) is no
    output: refused before anything runs, where it gave a zero gradient."""
    args = _csr_args()
    before = [np.copy(arg) for arg in args]
    f = adsrc.differentiate(csr_relax, wrt="data", outputs=(output,))
    with pytest.raises(adsrc.ArgumentError, match=f"outputs names '{output}', which is {kind}: "
                                                  "an output is a float array"):
        f.adjoint(*args)
    for arg, old in zip(args, before):
        np.testing.assert_array_equal(arg, old)


def _scaling_kernel(factor):
    def scaled(x, y):
        for i in range(len(x)):
            y[i] = factor * x[i]  # <-
    return scaled


def test_a_variable_of_an_enclosing_function_is_named_as_such():
    x, y = np.ones(3), np.zeros(3)
    with pytest.raises(adsrc.UnsupportedError, match=r"test_errors.py:\d+:\d+: error: 'factor' "
                       "is a variable of an enclosing function, which adsrc does not read: "
                       "pass it as an argument"):
        adsrc.differentiate(_scaling_kernel(2.0), wrt="x", outputs="y").adjoint(
            x, y, y_bar=np.ones(3))
    np.testing.assert_array_equal(y, np.zeros(3))


def bound_again_to_another_shape(x, n):
    y = np.zeros(3)
    y[0] = x[0]
    y = np.zeros(n)  # <-
    y[1] = 2.0 * x[1]
    return np.dot(y, y)


def argument_bound_to_another_shape(x, n):
    y = x * 3.0
    x = np.zeros(n)  # <-
    x[1] = y[1]
    return np.dot(x, x)


@pytest.mark.parametrize("kernel,array", [(bound_again_to_another_shape, "y"),
                                          (argument_bound_to_another_shape, "x")])
def test_array_bound_again_to_another_shape(kernel, array):
    """NumPy would bind the name to a new array of n elements; adsrc fills the one array the
    name has (an argument's local copy), so another shape is an error when the kernel runs,
    naming the binding and the kernel's name for the array."""
    f = adsrc.differentiate(kernel, wrt="x")
    place = f"test_errors.py:{_marked_line(kernel)}: "
    x = np.ones(4)
    with pytest.raises(AssertionError, match=re.escape(place) + f"'{array}' is bound again to "
                       "an array of another shape"):
        f.adjoint(x, 5, out_bar=1.0)
    np.testing.assert_array_equal(x, np.ones(4))
    x_bar, = f.adjoint(np.array([1.0, 3.0, 0.5]), 3, out_bar=1.0)
    weight = 8.0 if kernel is bound_again_to_another_shape else 18.0     # (2 x1)^2, (3 x1)^2
    np.testing.assert_allclose(x_bar, [0.0, weight * 3.0, 0.0], rtol=1e-14)


def largest_of_a_slice(x, k):
    return np.max(x[k:]) * x[0]  # <-


def test_max_of_an_empty_array():
    """NumPy raises on np.max of no elements; -inf, where adsrc's loop starts, would be a wrong
    number, so the loop asserts there is an element first, naming the statement."""
    f = adsrc.differentiate(largest_of_a_slice, wrt="x")
    place = f"test_errors.py:{_marked_line(largest_of_a_slice)}: "
    with pytest.raises(AssertionError, match=re.escape(place) + "np.max of an empty array"):
        f.adjoint(np.ones(3), 3, out_bar=1.0)
    x_bar, = f.adjoint(np.array([2.0, 5.0, 4.0]), 1, out_bar=1.0)
    np.testing.assert_array_equal(x_bar, [5.0, 2.0, 0.0])


@pytest.mark.parametrize("field", ["wrt", "outputs"])
def test_empty_wrt_or_outputs(field):
    """outputs=() would make every derivative zero, and check_grads compare zero with zero."""
    spec = {"wrt": ("data",), "outputs": ("x",), field: ()}
    with pytest.raises(adsrc.AdsrcError, match=f"csr_relax: {field} is empty"):
        adsrc.differentiate(csr_relax, **spec)
    with pytest.raises(adsrc.AdsrcError, match=f"{field} is empty"):
        adsrc.check_grads(csr_relax, _csr_args(), **spec)


_NO_SOURCE = eval("lambda x: x * x")  # noqa: S307  (a function without a source file)
_LAMBDA_OWN_LINE = lambda x: 2.0 * x  # noqa: E731


@pytest.mark.parametrize("fn", [np.sum, builtins.sum, math.sqrt, len, _NO_SOURCE,
                                _LAMBDA_OWN_LINE, lambda x: 2.0 * x],
                         ids=["np.sum", "sum", "math.sqrt", "len", "eval_lambda",
                              "lambda_own_line", "lambda_inside_an_expression"])
def test_non_kernel_callable(fn):
    x = np.linspace(0.5, 1.5, 4)
    before = x.copy()
    with pytest.raises(adsrc.AdsrcError):
        f = adsrc.differentiate(fn, wrt=0)
        f.adjoint(x)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("fn", [len, math.sqrt, int, 42])
def test_a_non_function_is_named_before_its_wrt_is_looked_at(fn):
    """Not 'wrt names x, which is not an argument (arguments: obj)'."""
    with pytest.raises(adsrc.AdsrcError, match="plain Python functions defined with 'def'"):
        adsrc.differentiate(fn, wrt="x")


def _tripled(fn):
    @functools.wraps(fn)
    def wrapper(x):
        return 3.0 * fn(x)
    return wrapper


@_tripled
def squares_tripled_by_a_decorator(x):
    return np.sum(x * x)


def test_a_wrapper_made_by_a_decorator_is_refused():
    """inspect reads the source of the function a functools.wraps wrapper wraps: adsrc
    differentiated sum(x * x) where Python runs 3 * sum(x * x), a third of the value and the
    gradient, without an error."""
    x = np.array([1.0, 2.0])
    assert squares_tripled_by_a_decorator(x) == 15.0
    with pytest.raises(adsrc.AdsrcError, match="squares_tripled_by_a_decorator wraps another "
                                               "function"):
        adsrc.value_and_grad(squares_tripled_by_a_decorator, wrt="x")(x)
    np.testing.assert_array_equal(x, [1.0, 2.0])


@pytest.mark.parametrize("wrt, message", [
    (1.0, "wrt takes argument names or positions, got 1.0"),
    (None, "wrt takes argument names or positions, got None"),
    (("data", "data"), "wrt names 'data' twice"),
    ((2, "data"), "wrt names 'data' twice"),
])
def test_wrt_that_is_no_list_of_distinct_arguments(wrt, message):
    with pytest.raises(adsrc.AdsrcError, match=re.escape(message)):
        adsrc.differentiate(csr_relax, wrt=wrt)


def relaxed_count(x, b):
    """A solver returning its iteration count, as many do."""
    k = 0
    for i in range(len(x)):
        x[i] = 0.5 * (x[i] + b[i])
        k += 1
    return k


def test_an_int_return_value_is_no_output_and_says_what_to_name():
    x, b = np.zeros(3), np.ones(3)
    with pytest.raises(adsrc.AdsrcError, match=r"the return value is int, not a float: there "
                                               r"is no derivative to take of it \(without "
                                               r"outputs=, the return value is the output"):
        adsrc.differentiate(relaxed_count, wrt="b").adjoint(x, b, x_bar=np.ones(3))
    with pytest.raises(adsrc.AdsrcError, match=r"take of it$"):
        adsrc.differentiate(relaxed_count, wrt="b", outputs="return").adjoint(x, b)
    assert not x.any()
    (b_bar,) = adsrc.differentiate(relaxed_count, wrt="b", outputs=("x",)).adjoint(
        x, b, x_bar=np.ones(3))
    np.testing.assert_array_equal(b_bar, 0.5 * np.ones(3))


def test_an_argument_given_by_keyword_is_named():
    """Not 'takes 6 arguments, 5 given', nor Python's 'unexpected keyword argument'."""
    args = _csr_args()
    by_position, b = args[:4] + args[5:], args[4]
    before = _copies(args)
    message = "csr_relax: pass the argument 'b' by position"
    f = _relax()
    with pytest.raises(adsrc.ArgumentError, match=message):
        f.adjoint(*by_position, b=b, x_bar=np.ones(4))
    with pytest.raises(adsrc.ArgumentError, match=message):
        f.tangent(*by_position, b=b, data_dot=np.ones(10))
    with pytest.raises(adsrc.ArgumentError, match="pass the argument 'x' by position"):
        adsrc.grad(dot2, wrt="y")(x=np.ones(3), y=np.ones(3))
    with pytest.raises(adsrc.ArgumentError, match="unexpected keyword arguments z"):
        adsrc.value_and_grad(dot2, wrt="y")(np.ones(3), np.ones(3), z=1.0)
    # these took no keyword at all: Python's TypeError, or the kernel's keyword taken for
    # hvp's direction
    with pytest.raises(adsrc.ArgumentError, match=message):
        f.primal(*by_position, b=b)
    with pytest.raises(adsrc.ArgumentError, match=message):
        adsrc.jacobian(f, wrt="data")(*by_position, b=b)
    with pytest.raises(adsrc.ArgumentError, match="unexpected keyword arguments x_bar"):
        adsrc.jacobian(f, wrt="data")(*args, x_bar=np.ones(4))
    with pytest.raises(adsrc.ArgumentError, match="pass the argument 'y' by position"):
        adsrc.hessian_operator(dot2, np.ones(3), y=np.ones(3), wrt="x")
    with pytest.raises(adsrc.ArgumentError, match="pass the argument 'x' by position"):
        adsrc.hvp(dot2, wrt="y")(y=np.ones(3), x=np.ones(3), y_dot=np.ones(3))
    _assert_unchanged(before, args)
    # the call of the kernel itself is the original function, keywords and all
    x, y = np.ones(3), np.full(3, 2.0)
    assert adsrc.differentiate(dot2, wrt="y")(y=y, x=x) == dot2(x, y)


@pytest.mark.parametrize("kernel", [star_args, default_argument, keyword_only_argument])
def test_parameters_a_kernel_cannot_take_are_refused_when_it_is_made_differentiable(kernel):
    """Before any call: not 'takes 3 arguments (x, a, rest), 2 given' first."""
    with pytest.raises(adsrc.UnsupportedError, match="plain positional arguments only"):
        adsrc.differentiate(kernel, wrt=0)


def length_also_bound_before_the_loop(x):
    n = 2
    s = 0.0
    for it in range(3):
        y = np.zeros(n)  # <-
        n = len(x)
        s += np.sum(y) + x[it]
    return s


def test_a_length_the_first_trip_reads_from_before_the_loop_is_refused():
    """NumPy's first y has 2 elements, the next ones len(x): one allocation before the loop
    cannot hold both, so the length the loop assigns is not read in its place."""
    with pytest.raises(adsrc.UnsupportedError, match="with a shape that 'n' changes there") \
            as info:
        adsrc.grad(length_also_bound_before_the_loop, wrt="x")(np.ones(4))
    assert f":{_marked_line(length_also_bound_before_the_loop)}:" in str(info.value)


def residual_after_sweeps(x, b, sweeps):
    for sweep in range(sweeps):
        r = b - x * x
        x[:] = x + 0.5 * r
    return np.dot(r, r)  # <-


def test_a_name_a_loop_that_ran_no_trip_leaves_unbound():
    """Python raises UnboundLocalError at the return when sweeps is 0; the generated code,
    where r would be an array of whatever memory held (a wrong value, a zero gradient), checks
    that a statement binding r has run, in every mode, naming the line and the name.  (The
    kernels of tests/subset_kernels.py that read such names after a loop that ran are
    checked against finite differences there.)"""
    x, b = np.array([1.0, 0.5, 2.0]), np.ones(3)
    with pytest.raises(UnboundLocalError):
        residual_after_sweeps(x.copy(), b, 0)
    message = re.escape(f"test_errors.py:{_marked_line(residual_after_sweeps)}: 'r' is read "
                        "before it is bound (Python raises UnboundLocalError here)")
    f = adsrc.differentiate(residual_after_sweeps, wrt="x")
    calls = [lambda: f.adjoint(x.copy(), b, 0, out_bar=1.0),
             lambda: f.tangent(x.copy(), b, 0, x_dot=np.ones(3)),
             lambda: f.tangent(x.copy(), b, 0, x_dot=np.eye(3)),
             lambda: adsrc.hvp(residual_after_sweeps, wrt="x")(x, b, 0, x_dot=np.ones(3)),
             lambda: adsrc.grad(residual_after_sweeps, wrt="x")(x.copy(), b, 0)]
    for call in calls:
        with pytest.raises(AssertionError, match=message):
            call()
    x_bar, = f.adjoint(x.copy(), b, 1, out_bar=1.0)     # one sweep: r = b - x*x, read as is
    np.testing.assert_allclose(x_bar, 2.0 * (b - x * x) * -2.0 * x, rtol=1e-14)


def halve_until_small(x, tol, n):
    k = 0
    while k == 0 or err > tol:  # <-
        if k >= n:
            break
        x[0] = 0.5 * x[0]
        k += 1
        if x[0] > 1.0:
            continue
        err = x[0]
    return x[0] * 2.0


def positive_square_taken(x, c):
    if c > 1:
        s = x[0] * x[0]
    t = s if c > 0 else 1.0  # <-
    if c > 2 and s > 4.0:
        t = t + s
    return x[1] * t


def test_a_name_read_for_some_values_only_is_checked_where_python_reads_it(backend):
    """A read in the right operand of 'or'/'and' or in a branch of 'a if c else b' is made
    only for some values, so no check before the statement can stand for it (that check
    would stop kernels Python runs); it went unchecked and the compiled code read a variable
    no statement had bound (0.0: a value and a gradient where Python raises).  The check
    follows Python's evaluation: it raises exactly where Python raises, at every evaluation of
    a while test (after a 'continue' too), and the values and gradients are Python's and
    finite differences' elsewhere."""
    def raises(kernel, *args):
        with pytest.raises(UnboundLocalError):
            kernel(*args)
        message = f"test_errors.py:{_marked_line(kernel)}: '.*' is read before it is bound"
        with pytest.raises(AssertionError, match=message):
            adsrc.value_and_grad(kernel, wrt="x")(*args)

    # 8 halves to 4, above 1: the loop continues without binding err and reads it
    raises(halve_until_small, np.array([8.0]), 1e-3, 5)
    value, gradient = adsrc.value_and_grad(halve_until_small, wrt="x")(np.array([0.5]), 1e-3, 5)
    assert (value, gradient[0]) == (2.0 * 0.5 / 32, 2.0 / 32)     # five halvings, then k == n
    adsrc.check_grads(halve_until_small, [np.array([0.5]), 1e-3, 5], "x")
    raises(positive_square_taken, np.array([3.0, 2.0]), 1)
    for c, want in ((0, [0.0, 1.0]), (2, [2.0 * 3.0 * 2.0, 9.0]), (3, [24.0, 18.0])):
        x = np.array([3.0, 2.0])
        value, gradient = adsrc.value_and_grad(positive_square_taken, wrt="x")(x, c)
        assert value == positive_square_taken(x, c)
        np.testing.assert_array_equal(gradient, want)
        adsrc.check_grads(positive_square_taken, [x, c], "x")


_SHAPES_UNDER_O = """
import numpy as np
import adsrc

def sum_of_products(x, z, y):
    t = x * y
    z[0] = t[0] + t[1]

f = adsrc.differentiate(sum_of_products, wrt="x", outputs="z")
try:
    f.adjoint(np.ones(3), np.zeros(3), np.ones(2), z_bar=np.ones(3))
except AssertionError as error:
    print(error)
"""


def test_checks_run_under_python_dash_o(tmp_path):
    """``python -O`` strips assert statements; adsrc's checks run with the kernel are raised
    from a plain condition, so they still stop it before it reads past an array's end."""
    (tmp_path / "kern.py").write_text(_SHAPES_UNDER_O)
    result = subprocess.run([sys.executable, "-O", "kern.py"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.stdout.strip() == ("kern.py:6: operands of different shapes in an "
                                     "element-wise statement"), result.stderr


def underscore_after_sweeps(x, sweeps):
    for sweep in range(sweeps):
        _ = x * 2.0
    return np.dot(_, x)  # <-


def test_the_name_underscore_is_checked_too():
    """'_' is a user's name (generated names start with '_' and go on)."""
    f = adsrc.differentiate(underscore_after_sweeps, wrt="x")
    place = f"test_errors.py:{_marked_line(underscore_after_sweeps)}: "
    with pytest.raises(AssertionError, match=re.escape(place + "'_' is read before it is bound")):
        f.adjoint(np.ones(3), 0, out_bar=1.0)
    x_bar, = f.adjoint(np.array([1.0, 2.0, 3.0]), 2, out_bar=1.0)
    np.testing.assert_allclose(x_bar, [4.0, 8.0, 12.0], rtol=1e-15)     # d(2 x.x) = 4 x


def negative_extent_in_a_branch(x, c):
    s = x[0]
    if c > 0:
        m = len(x) - c
        w = np.zeros(m)  # <-
        s += np.sum(w)
    return s


def test_a_negative_extent_where_the_statement_runs():
    """The array is allocated ahead of the branch (with no element for a negative extent,
    where Python may not take the branch); where the statement runs, NumPy's refusal."""
    f = adsrc.differentiate(negative_extent_in_a_branch, wrt="x")
    place = f"test_errors.py:{_marked_line(negative_extent_in_a_branch)}: "
    with pytest.raises(AssertionError, match=re.escape(place + "negative dimensions")):
        f.adjoint(np.ones(3), 10, out_bar=1.0)
    x_bar, = f.adjoint(np.ones(3), 1, out_bar=1.0)
    np.testing.assert_array_equal(x_bar, [1.0, 0.0, 0.0])


_EDITED = '''import math


def cubes(x, n):
    s = 0.0
    for i in range(n):
        s += 5.0 * x[i] * x[i] * x[i]
    return s


def squares(x, n):
    s = 0.0
    for i in range(n):
        s += x[i] * x[i]
    return math.fabs(s)
'''


_X = np.linspace(0.1, 1.0, 5)
# edit -> (the file after it, words of the refusal, the gradient of 'squares' after a reload)
_EDITS = {
    "lines_added_above": ("# a note\n" * 7 + _EDITED, "line 11 now defines 'cubes'", 2.0 * _X),
    "constant_added": (_EDITED.replace("s += x[i] * x[i]", "s += 3.0 * x[i] * x[i]"),
                       "the file has changed since its module was imported", 6.0 * _X),
    # no new name or constant: an operand swapped for a local the kernel has
    "operand_swapped": (_EDITED.replace("s += x[i] * x[i]", "s += x[i] * i"),
                        "the file has changed since its module was imported",
                        np.arange(5.0)),
}


@pytest.mark.parametrize("edit", sorted(_EDITS))
def test_a_kernel_whose_file_changed_after_import_is_refused(tmp_path, monkeypatch, edit):
    """adsrc reads a kernel's source from its file, at the lines the function had when its
    module was imported: a file edited since (and not reloaded) gave the derivative of the
    code now there: of 'cubes' for 'squares' when lines were added above it, of the new body
    when it was changed, while Python runs the old one.  A module that imports math compiles
    math.fabs(s) otherwise than the function's text alone: not a change."""
    import importlib
    path = tmp_path / "edited_kernels.py"
    path.write_text(_EDITED)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("edited_kernels")
    try:
        text, words, gradient = _EDITS[edit]
        path.write_text(text)
        with pytest.raises(adsrc.AdsrcError, match=re.escape(words)):
            adsrc.grad(module.squares, wrt="x")
        # reloaded, the kernel is the file's again: its gradient against the closed form and
        # finite differences
        module = importlib.reload(module)
        np.testing.assert_allclose(adsrc.grad(module.squares, wrt="x")(_X.copy(), 5), gradient,
                                   rtol=1e-14)
        adsrc.check_grads(module.squares, (_X.copy(), 5), wrt="x")
    finally:
        del sys.modules["edited_kernels"]       # the next test's file is another one


def test_a_loop_body_nested_deeper_than_pythons_parser_is_refused_naming_the_kernel(tmp_path):
    """50 ifs that break, each followed by a nested if that continues: each if that breaks
    holds the rest of the body, so the generated Python nests past Python's 100 levels of
    indentation, and loading it raised IndentationError from inside adsrc."""
    lines = ["def deep(x, w):", "    s = 0.1 * w", "    for i in range(len(x)):"]
    for k in range(50):
        lines += ["        s = s * 0.99 + 0.01 * x[i] * w", f"        if s > {50 + k}.0:",
                  "            break", f"        if x[i] > {2 + k}.0:", "            if i > 100:",
                  "                continue"]
    path = tmp_path / "deep_kernel.py"
    path.write_text("\n".join(lines + ["    return s"]) + "\n")
    spec = importlib.util.spec_from_file_location("deep_kernel", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = np.array([0.25, 0.45, 0.65])
    with pytest.raises(adsrc.UnsupportedError, match=r"deep_kernel.py:1:1: error: the generated "
                                                     r"Python nests its statements deeper than "
                                                     r"Python's parser takes"):
        adsrc.grad(module.deep, wrt="w", backend="python")(x, 0.8)
