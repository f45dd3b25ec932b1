"""The supported language subset of docs/API.md, one small kernel per item
(tests/subset_kernels.py), each checked three ways:

(a) ``adsrc.check_grads`` (random directions, Richardson-extrapolated FD) at rtol 1e-7;
(b) the full adjoint ``J^T w`` (``Differentiable.adjoint`` with random seeds, and
    ``adsrc.grad`` for kernels returning a scalar) against a per-component central
    finite-difference gradient computed here (h = 1e-6, rtol 1e-6);
(c) the dot-product test of tangent mode against the adjoint, a second method without finite
    differences.

Also: the state adjoint() leaves equals the primal's, the semantics of the bars
(output bars -> adjoint of the initial value, other wrt bars incremented), the
default-outputs rule, f.source("adjoint") and the generated module run by hand.
"""

import builtins
import importlib.util
import inspect
import io
import re
import tokenize
from dataclasses import dataclass

import numpy as np
import pytest

import adsrc
import subset_kernels as K
from adsrc.runtime.tape import Tape

pytestmark = pytest.mark.usefixtures("backend")   # every test on both backends

INT_DTYPES = (np.int32, np.int64)
FD_H = 1e-6
FD_RTOL = 1e-6


# ---------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    kernel: object
    make: object                 # make(rng, int_dtype) -> tuple of args
    wrt: tuple
    outputs: tuple = None        # passed to adsrc (None: the default rule)
    effective: tuple = None      # the outputs the default rule must choose (when outputs is None)
    uses_indices: bool = False

    @property
    def params(self):
        return list(inspect.signature(self.kernel).parameters)

    def index(self, name):
        return self.params.index(name)

    @property
    def outs(self):
        return self.outputs if self.outputs is not None else self.effective


def _u(rng, n, lo=0.5, hi=1.5):
    return rng.uniform(lo, hi, n)


def _spd(rng, n):
    """A symmetric positive definite matrix, well conditioned."""
    m = rng.uniform(-0.5, 0.5, (n, n))
    return m @ m.T + n * np.eye(n)


def _csr(int_dtype):
    import scipy.sparse as sp
    a = sp.csr_matrix(sp.diags([-1.0, 3.0, -1.2], [-1, 0, 2], shape=(6, 6)))
    a.sort_indices()
    return (a.indptr.astype(int_dtype), a.indices.astype(int_dtype),
            np.array(a.data, dtype=np.float64))


def _mixed_sign(rng, n, margin=0.3):
    """values with |x| >= margin, alternating signs."""
    return np.array([(margin + rng.uniform(0.0, 1.0)) * (-1) ** k for k in range(n)])


CASES = [
    Case("scalars_float_int", K.scalars_float_int, lambda r, d: (0.7, 0.9, 4), ("a", "b"),
         effective=("return",)),
    Case("scalars_by_position", K.scalars_float_int, lambda r, d: (0.7, 0.9, 4), (1, 0),
         outputs=("return",)),
    Case("array_1d", K.array_1d, lambda r, d: (_u(r, 6), _u(r, 6)), ("x", "y"), ("y",)),
    Case("array_1d_output_not_wrt", K.array_1d, lambda r, d: (_u(r, 6), _u(r, 6)), ("x",),
         ("y",)),
    Case("array_2d", K.array_2d, lambda r, d: (_u(r, (4, 3)), _u(r, 3), _u(r, 4)),
         ("a", "x"), ("y",)),
    Case("mean_square", K.mean_square, lambda r, d: (_u(r, 5),), ("x",),
         effective=("return",)),
    Case("negative_constant_indices", K.negative_constant_indices,
         lambda r, d: (_u(r, 5), _u(r, (4, 3)), _u(r, 5)), ("x", "u"), ("y",)),
    Case("periodic_stencil", K.periodic_stencil, lambda r, d: (_u(r, 6), _u(r, 6)), ("x",),
         ("y",)),
    Case("periodic_sweeps", K.periodic_sweeps, lambda r, d: (_u(r, 6), _u(r, 6), 3), ("x", "b"),
         ("x",)),
    Case("periodic_2d", K.periodic_2d, lambda r, d: (_u(r, (4, 3)), _u(r, (4, 3))), ("u",),
         ("v",)),
    Case("negative_index_variables", K.negative_index_variables,
         lambda r, d: (_u(r, 6), _u(r, 6), -3), ("x", "y"), ("y",)),
    Case("numpy_methods", K.numpy_methods, lambda r, d: (_u(r, 5), _u(r, 5)), ("x", "y"),
         effective=("return",)),
    # the maximum is at the last element, far from the others (x increasing past 1)
    Case("module_constants", K.module_constants,
         lambda r, d: (np.array([0.9, 1.2, 1.5, 1.8, 2.1]),), ("x",), effective=("return",)),
    Case("elements_in_whole_array_statements", K.elements_in_whole_array_statements,
         lambda r, d: (_u(r, 5), _u(r, 3), _u(r, 5), 1), ("x", "w"), ("return", "y")),
    Case("arrays_from_slices", K.arrays_from_slices, lambda r, d: (_u(r, 9), _u(r, (4, 5))),
         ("x", "u"), effective=("return",)),
    Case("arrays_bound_again", K.arrays_bound_again, lambda r, d: (_spd(r, 4), _u(r, 4),
                                                                    _u(r, 4), 3),
         ("A", "b", "x"), effective=("return",)),
    Case("arrays_allocated_in_loops", K.arrays_allocated_in_loops,
         lambda r, d: (_u(r, 6), _u(r, 3), 3), ("x", "w"), ("return", "x")),
    Case("arguments_bound_again", K.arguments_bound_again,
         lambda r, d: (_spd(r, 4), _u(r, 4), _u(r, 4), 3), ("A", "v", "x"),
         effective=("return",)),
    Case("swapped_local_arrays", K.swapped_local_arrays,
         lambda r, d: (_u(r, 6), _u(r, 6), 3), ("b", "x0"), effective=("return",)),
    Case("allocation_after_early_return", K.allocation_after_early_return,
         lambda r, d: (np.array([0.7, 1.2, 0.9, 1.1]),), ("x",), effective=("return",)),
    Case("allocation_after_early_return_taken", K.allocation_after_early_return,
         lambda r, d: (np.array([1.3, 1.2, 0.9, 1.1]),), ("x",), effective=("return",)),
    Case("float64_allocations", K.float64_allocations, lambda r, d: (_u(r, 5), _u(r, 5)),
         ("x", "y"), ("y",)),
    Case("iterate_elements", K.iterate_elements, lambda r, d: (_u(r, 5), _u(r, 5)),
         ("x", "w"), ("return", "x")),
    Case("iterate_zipped", K.iterate_zipped, lambda r, d: (_u(r, 5), _u(r, 7), _u(r, 5)),
         ("x", "y", "z"), ("return", "x", "z")),
    Case("chained_indices_2d", K.chained_indices_2d,
         lambda r, d: (_u(r, (4, 3)), _u(r, (4, 3)), _u(r, 3)), ("a", "u", "x"), ("u",)),
    Case("write_2d", K.write_2d, lambda r, d: (_u(r, (3, 4)), _u(r, (3, 4))), ("u", "f"),
         effective=("u",)),
    Case("gather_scatter", K.gather_scatter,
         lambda r, d: (np.array([2, 0, 2, 5, 1, 3], dtype=d), _u(r, 6), _u(r, 6)),
         ("x",), ("y",), uses_indices=True),
    Case("csr_matvec", K.csr_matvec, lambda r, d: (*_csr(d), _u(r, 6), np.zeros(6)),
         ("data", "x"), ("y",), uses_indices=True),
    Case("augassign_scalars", K.augassign_scalars, lambda r, d: (0.8, 1.3), ("a", "b")),
    Case("augassign_elements", K.augassign_elements, lambda r, d: (_u(r, 5), _u(r, 5)),
         ("x", "y"), ("y",)),
    Case("augassign_2d_elements", K.augassign_2d_elements,
         lambda r, d: (_u(r, (3, 2)), _u(r, (3, 2))), ("u", "v"), ("u",)),
    Case("axpy_whole", K.axpy_whole, lambda r, d: (_u(r, 5), _u(r, 5), _u(r, 5), 0.7),
         ("x", "dinv", "r", "alpha"), ("x",)),
    Case("residual_whole", K.residual_whole, lambda r, d: (_u(r, 5), _u(r, 5), np.zeros(5)),
         ("b", "y"), ("r",)),
    Case("whole_2d", K.whole_2d, lambda r, d: (_u(r, (3, 4)), _u(r, (3, 4))), ("u", "f"),
         ("u",)),
    Case("whole_2d_by_rows", K.whole_2d_by_rows,
         lambda r, d: (_u(r, (4, 3)), _u(r, (4, 3)), _u(r, (4, 3))), ("u", "f"), ("u",)),
    Case("slice_inner", K.slice_inner, lambda r, d: (_u(r, 7), _u(r, 7)), ("x", "y"), ("y",)),
    Case("slice_step", K.slice_step, lambda r, d: (_u(r, 8), _u(r, 8)), ("x", "y"), ("y",)),
    Case("slice_negative_step", K.slice_negative_step,
         lambda r, d: (_u(r, 6), _u(r, 6), _u(r, (3, 2))), ("x", "y", "u"), ("y", "u")),
    Case("slice_runtime_bound", K.slice_runtime_bound, lambda r, d: (_u(r, 7), _u(r, 7)),
         ("v", "w"), ("v",)),
    Case("slices_read_old_values", K.slices_read_old_values,
         lambda r, d: (_u(r, 6), _u(r, (4, 5))), ("x", "u"), ("x", "u")),
    Case("size_attribute", K.size_attribute, lambda r, d: (_u(r, (3, 4)), _u(r, 5)),
         ("u", "x"), effective=("return",)),
    Case("shape_unpack_in_loop", K.shape_unpack_in_loop,
         lambda r, d: (_u(r, (3, 4)), _u(r, (3, 4))), ("u", "f"), ("u",)),
    Case("range_step2", K.range_step2, lambda r, d: (_u(r, 9), _u(r, 9), 1, 8), ("x", "y"),
         ("y",)),
    Case("range_negative", K.range_negative, lambda r, d: (_u(r, 6),), ("x",), ("x",)),
    Case("range_negative_step2", K.range_negative_step2, lambda r, d: (_u(r, 7), _u(r, 7)),
         ("x", "y"), ("y",)),
    Case("reversed_range", K.reversed_range, lambda r, d: (_u(r, 6),), ("x",), ("x",)),
    Case("reversed_range_steps", K.reversed_range_steps,
         lambda r, d: (_u(r, 12), _u(r, 12), 1, 10), ("x", "y"), ("y",)),
    Case("nested_loops", K.nested_loops, lambda r, d: (_u(r, 5), _u(r, 5), 2), ("x", "y"),
         ("y",)),
    # s: 3.0, 1.35, 0.6075, 0.273, 0.123, 0.0554 -> 5 trips, far from tol = 0.1
    Case("while_halving", K.while_halving, lambda r, d: (3.0, 0.9, 0.1), ("a", "c", "tol")),
    Case("while_index", K.while_index,
         lambda r, d: (np.array([0.5, 1.2, 0.8, -0.7, 0.9]), _u(r, 5)), ("x", "y"), ("y",)),
    # x[i] > 0.5 both ways, with margins of at least 0.1
    Case("conditional_expressions", K.conditional_expressions,
         lambda r, d: (np.array([0.9, 0.2, 1.3, 0.4, 1.1, 0.7]), _u(r, 6), _u(r, 6)),
         ("x", "w", "y"), ("y",)),
    Case("array_gathers", K.array_gathers,
         lambda r, d: (*_csr(d), np.array([4, 0, 1, 1, 5, 2], dtype=d), _u(r, 6), _u(r, 6)),
         ("data", "x", "y"), ("return", "y"), uses_indices=True),
    # x against lo = 0.95 and the clip's 1.2, and lo against 0.5, with margins of 0.05
    Case("where_clip_diag", K.where_clip_diag,
         lambda r, d: (_spd(r, 6), np.array([0.6, 1.3, 0.8, 1.45, 1.0, 0.7]),
                       np.array([1, 0, 0, 1, 1, 0], dtype=d), 0.95, _u(r, 6)),
         ("A", "x", "lo", "y"), ("return", "y"), uses_indices=True),
    Case("augmented_powers", K.augmented_powers, lambda r, d: (_u(r, 5), _u(r, 5), 9),
         ("x", "y"), ("y",)),
    # every maximum and minimum taken is unique, and no element of y is near x's maximum
    Case("mean_max_min", K.mean_max_min,
         lambda r, d: (np.array([0.6, 1.3, 0.8, 1.45, 1.0, 0.7]),
                       np.array([[0.5, -1.4, 0.9], [1.1, 0.3, -0.2]]),
                       np.array([1.2, 0.9, 0.6, 1.0, 1.4, 0.5])),
         ("x", "u", "y"), ("return", "y")),
    Case("rolled_and_elementary", K.rolled_and_elementary,
         lambda r, d: (_u(r, 7), 0.2, _u(r, 7)), ("u", "c", "y"), ("u", "y")),
    Case("momentum_names", K.momentum_names,
         lambda r, d: (_spd(r, 5), _u(r, 5), _u(r, 5), 0.05, 3), ("A", "b", "x", "lr"),
         effective=("return",)),
    # every row's and column's maximum and minimum is unique (the ramps)
    Case("axis_reductions", K.axis_reductions,
         lambda r, d: (_u(r, (5, 5)) + 0.2 * np.arange(5)[:, None] + 0.3 * np.arange(5),
                       _u(r, 5), _u(r, 5)),
         ("A", "x", "y"), ("return", "y")),
    Case("broadcasting", K.broadcasting,
         lambda r, d: (_u(r, (4, 4)), _u(r, 4), _u(r, 4), _u(r, 4)), ("A", "d", "x", "y"),
         ("return", "A", "y")),
    Case("kept_dimensions", K.kept_dimensions,
         lambda r, d: (r.uniform(-1.0, 1.0, (3, 5)), r.uniform(-1.0, 1.0, (3, 5))), ("Z", "W")),
    Case("constant_arrays", K.constant_arrays,
         lambda r, d: (_u(r, (4, 4)), _u(r, 4), 0.7, _u(r, 4)), ("A", "x", "lam"), ("y",)),
    # z is 0.08 or more from 0 and from +-theta, one element shrunk to 0, x[1:] - 0.1 0.2 or
    # more from 0, and A @ x's maximum 0.2 above the next
    Case("signs_differences_methods", K.signs_differences_methods,
         lambda r, d: (np.array([[1.0, 0.3, -0.5, 0.2, 0.1], [0.2, -0.9, 0.4, -0.3, 0.6],
                                 [-0.4, 0.1, 1.1, 0.5, -0.2], [0.3, 0.7, -0.2, -1.2, 0.4],
                                 [0.5, -0.1, 0.3, 0.2, 0.8]]),
                       np.array([0.9, -0.6, 0.4, 1.1, -0.8]), 0.35,
                       np.array([0.3, -0.5, 0.2, -0.4, 0.6])),
         ("A", "x", "theta", "y"), ("return", "x", "y")),
    # p = x mod L, x * x, x / L, 2 / (L + x), 0.9 * x, 1.7 * x 0.05 or more from where //, %
    # and the roundings jump (p from the cells' ends, multiples of h)
    Case("floors_and_remainders", K.floors_and_remainders,
         lambda r, d: (np.array([-1.33, -0.47, 0.31, 0.51, 1.29, 2.73]), _u(r, 5), 1.0, 0.2,
                       np.zeros(6)),
         ("x", "u", "L", "h"), ("return", "y")),
    Case("running_sums", K.running_sums,
         lambda r, d: (_u(r, 5), _u(r, 5), r.uniform(-1.0, 1.0, 5), 0.7),
         ("x", "y", "w", "h"), ("return", "y")),
    Case("running_sums_elsewhere", K.running_sums_elsewhere,
         lambda r, d: (r.uniform(-1.0, 1.0, (5, 5)), _mixed_sign(r, 5), _u(r, 5)),
         ("u", "x", "y"), ("return", "u", "y")),
    Case("if_elif_else", K.if_elif_else,
         lambda r, d: (np.array([1.5, -1.2, 0.1, 0.9, -0.2, -2.0]), _u(r, 6), 0.5),
         ("x", "y", "t"), ("y",)),
    Case("if_scalar_then", K.if_scalar, lambda r, d: (2.0, 1.0), ("a", "b")),
    Case("if_scalar_else", K.if_scalar, lambda r, d: (0.5, 1.5), ("a", "b")),
    # cumulative sums 0.25, 1.25, 1.89, 3.33: breaks at i = 3, margins >= 5 %
    Case("loop_break", K.loop_break, lambda r, d: (np.array([0.5, 1.0, 0.8, 1.2, 0.3]), 2.0),
         ("x", "limit")),
    # s: 0.381, 0.78, 1.437, 1.733, 2.283 (breaks at k = 4)
    Case("nested_break_while", K.nested_break_while,
         lambda r, d: (np.array([0.762, 0.798, 1.314, 0.592, 1.1]), 2.2), ("x",),
         effective=("return",)),
    # y: 1.44 (> tol, i <= 1), 1.2, 1.68 (> tol: breaks at i = 2)
    Case("nested_break_records", K.nested_break_records,
         lambda r, d: (np.array([1.2, 0.8, 1.4, 1.1, 0.9]), np.array([1.2, 1.5, 1.2, 0.7, 1.3]),
                       1.3), ("x", "y"), ("y",)),
    Case("index_array_rewritten", K.index_array_rewritten,
         lambda r, d: (_u(r, 5), np.array([2, 0, 4, 1, 3], dtype=d), _u(r, 5)), ("x", "y"),
         ("y",), uses_indices=True),
    Case("loop_continue", K.loop_continue, lambda r, d: (_mixed_sign(r, 6), _u(r, 6)),
         ("x", "y"), ("y",)),
    # x alternates in sign, |x| in [0.3, 1.3]: every path of both blocks is taken
    Case("nested_continues", K.nested_continues,
         lambda r, d: (_mixed_sign(r, 8), np.array([0.9, 1.1]), _u(r, 8)), ("x", "w", "y"),
         ("y",)),
    # x cycles through 2.5, 1.5, 0.5: every path, with the continue on even i with x > 2
    Case("continue_past_two_rests", K.continue_past_two_rests,
         lambda r, d: (np.tile([2.5, 1.5, 0.5], 3) + 0.1 * _u(r, 9), _u(r, 9)), ("x", "y"),
         ("y",)),
    # s: 0.3, 0.56, 1.184, 2.276 > 2: breaks after i = 3
    Case("while_break", K.while_break,
         lambda r, d: (np.array([0.3, 0.2, 0.4, 0.5, 0.1, 0.3]), 2.0), ("x", "limit")),
    # s: 1.08, 1.74, 2.44, 3.61, 4.73 | 6.86, 7.52, 8.22, ... 18.89 (three sweeps): tol 7.9
    # returns at sweep 1, i = 2; tol 20 never; tol 0.5 at the top
    Case("early_return_in_loops", K.early_returns, lambda r, d: (
        np.array([0.9, 1.1, 0.7, 1.3, 0.8]), np.array([1.2, 0.6, 1.0, 0.9, 1.4]), 7.9),
        ("x", "y", "tol"), ("return", "y")),
    Case("early_return_none", K.early_returns, lambda r, d: (
        np.array([0.9, 1.1, 0.7, 1.3, 0.8]), np.array([1.2, 0.6, 1.0, 0.9, 1.4]), 20.0),
        ("x", "y", "tol"), ("return", "y")),
    Case("early_return_at_top", K.early_returns, lambda r, d: (_u(r, 5), _u(r, 5), 0.5),
         ("x", "y", "tol"), ("return", "y")),
    Case("early_bare_return", K.early_bare_return,
         lambda r, d: (np.array([0.6, 0.9, 1.3, 0.7]), _u(r, 4)), ("x", "y"), ("y",)),
    Case("recursive_early_return", K.recursive_early_return, lambda r, d: (_u(r, 5), 2),
         ("x",), ("x",)),
    Case("views_only_read", K.views_only_read,
         lambda r, d: (r.uniform(-1.0, 1.0, (4, 4)), _u(r, 4), np.zeros(4)), ("A", "x"),
         ("return", "y")),
    Case("tuple_assignment", K.tuple_assignment,
         lambda r, d: (_u(r, 5), np.array([3, 1, 4, 0, 2], dtype=d), _u(r, 5)), ("x", "y"),
         ("x", "y"), uses_indices=True),
    Case("temporaries", K.temporaries, lambda r, d: (_u(r, 5), _u(r, 5)), ("x", "y"),
         ("y", "return")),
    Case("functions_elementwise", K.functions_elementwise,
         lambda r, d: (np.array([0.6, 1.4, 0.9, 1.2]), np.array([0.9, 0.8, 1.5, -0.7])),
         ("x", "y"), ("y",)),
    Case("functions_whole_array", K.functions_whole_array,
         lambda r, d: (np.array([0.6, 1.4, 0.9, 1.2]), np.array([0.9, 0.8, 1.5, -0.7])),
         ("x", "y"), ("y",)),
    Case("dot_sum", K.dot_sum, lambda r, d: (_u(r, 5), _u(r, 5)), ("x", "y")),
    Case("sum_2d", K.sum_2d, lambda r, d: (_u(r, (3, 4)),), ("u",)),
    Case("local_zeros", K.local_zeros, lambda r, d: (_u(r, 5),), ("x",)),
    Case("local_empty", K.local_empty, lambda r, d: (_u(r, 5), _u(r, 5)), ("x", "y"), ("y",)),
    Case("local_zeros_like", K.local_zeros_like, lambda r, d: (_u(r, 5), _u(r, 5)), ("x", "y"),
         ("y",)),
    Case("local_copy", K.local_copy, lambda r, d: (_u(r, 6), _u(r, 6)), ("x", "y"), ("y",)),
    Case("local_zeros_2d", K.local_zeros_2d, lambda r, d: (_u(r, (3, 4)),), ("u",), ("u",)),
    Case("local_zeros_shape", K.local_zeros_shape, lambda r, d: (_u(r, (3, 4)),), ("u",),
         ("u",)),
    Case("local_zeros_like_2d", K.local_zeros_like_2d, lambda r, d: (_u(r, (3, 4)),), ("u",),
         ("u",)),
    Case("local_copy_2d", K.local_copy_2d, lambda r, d: (_u(r, (4, 5)),), ("u",), ("u",)),
    Case("shape_and_len", K.shape_and_len, lambda r, d: (_u(r, (3, 4)), _u(r, 5)), ("u", "x")),
    Case("call_scalar_in_expression", K.call_scalar_in_expression,
         lambda r, d: (_u(r, 4), _u(r, 4)), ("x", "y")),
    Case("call_results_recorded", K.call_results_recorded,
         lambda r, d: (_u(r, 3), _u(r, 3), 0.3), ("x", "y", "t"), ("return", "y")),
    Case("call_statement", K.call_statement, lambda r, d: (_u(r, 4), _u(r, 4), 0.7),
         ("x", "y", "alpha"), ("x", "y")),
    Case("call_statement_default_outputs", K.call_statement,
         lambda r, d: (_u(r, 4), _u(r, 4), 0.7), ("alpha",), effective=("x", "y")),
    # hoisting of calls and reductions (desugar) and reductions into temporaries (lower_arrays)
    Case("call_into_element", K.call_into_element, lambda r, d: (_u(r, 5), _u(r, 5, 0.1, 0.3)),
         ("x", "y"), ("x",)),
    Case("call_of_inactive_in_expression", K.call_of_inactive_in_expression,
         lambda r, d: (_u(r, 5), 0.7), ("x",), ("x",)),
    Case("call_with_2d_element", K.call_with_2d_element,
         lambda r, d: (_u(r, 4), _u(r, (4, 3))), ("x", "u")),
    Case("reduction_into_element", K.reduction_into_element,
         lambda r, d: (_u(r, 5), _u(r, 5)), ("x", "y"), ("x", "y")),
    Case("maxima_into_a_call", K.maxima_into_a_call, lambda r, d: (_u(r, 5), _u(r, 5), 0.7),
         ("x", "y", "a")),
    Case("reduction_reads_target", K.reduction_reads_target, lambda r, d: (_u(r, 5), 0.8),
         ("x", "a")),
    # values chosen so that every condition is >= 0.04 away from switching
    Case("calls_in_if_conditions_elif", K.calls_in_if_conditions,
         lambda r, d: (np.array([0.5, -0.4, 0.3, 0.6, 0.1]),
                       np.array([0.9, 0.2, -0.5, 0.7, 0.4])), ("x", "y")),
    Case("calls_in_if_conditions_then", K.calls_in_if_conditions,
         lambda r, d: (np.array([1.2, 0.9, -0.8, 1.1, 0.7]),
                       np.array([0.3, -0.6, 0.2, -0.4, 0.5])), ("x", "y")),
    Case("call_in_if_condition_in_loop", K.call_in_if_condition_in_loop,
         lambda r, d: (np.array([0.2, 1.3, 0.9, 1.5, 0.6]),
                       np.array([0.4, 0.7, 1.1, -0.3, 0.9])), ("x", "y")),
    # sq_norm(x) / (tol * sum(x)) on the trips: 1.60, 1.28, 1.12 (continue), 0.89 -> 3 trips
    Case("calls_in_while_condition", K.calls_in_while_condition,
         lambda r, d: (np.array([1.4, 0.9, 1.2, 0.8, 1.1]), 0.7), ("x", "tol")),
    # sum(x) = 4.7: 4 trips
    Case("reduction_in_range", K.reduction_in_range,
         lambda r, d: (np.array([0.9, 1.1, 0.8, 1.2, 0.7]), _u(r, 5)), ("x", "y"), ("y",)),
    Case("rec_sum_depth5", K.rec_sum, lambda r, d: (_u(r, 5), 5), ("x",)),
    Case("rec_sweep_depth4", K.rec_sweep, lambda r, d: (_u(r, 5), _u(r, 5), 4), ("x", "y"),
         ("y",)),
    Case("returns_nothing_default_outputs", K.returns_nothing,
         lambda r, d: (_u(r, 4), _u(r, 4), _u(r, 4)), ("x",), effective=("y", "z")),
    Case("returns_scalar_default_outputs", K.returns_scalar_and_mutates,
         lambda r, d: (_u(r, 4), _u(r, 4)), ("x",), effective=("return",)),
    Case("uses_module_constant", K.uses_constant, lambda r, d: (_u(r, 4),), ("x",), ("x",)),
    Case("int_returning_calls", K.weighted_by_row_lengths,
         lambda r, d: (np.array([0, 1, 3, 6], dtype=d), _u(r, 3)), ("x",), uses_indices=True),
    # from x = 0 the residuals are 10.7, 3.29, ..., 0.00678, 0.00239: eight sweeps to 0.004
    Case("calls_writing_in_conditions", K.sweeps_in_conditions,
         lambda r, d: (np.zeros(5), np.array([1.0, 0.8, 1.2, 0.9, 1.1]), 0.004, 4),
         ("x", "b")),
    Case("allocated_in_a_loop_by_a_length", K.halves_in_a_loop, lambda r, d: (_u(r, 6), 3),
         ("x",)),
    Case("allocated_in_a_loop_by_a_helper", K.steps_along_residuals,
         lambda r, d: (0.3 * _u(r, 5), _u(r, 5), 3), ("x", "b")),
    Case("power_at_a_zero_base", K.power_of_array,
         lambda r, d: (np.array([0.0, 0.5, 1.5]), 2.5, np.zeros(3)), ("p",), ("y",)),
    Case("variable_positive_step", K.variable_step_ranges,
         lambda r, d: (_u(r, 7), _u(r, 7), 1, 7, 2), ("x", "y"), ("x", "y")),
    Case("variable_negative_step", K.variable_step_ranges,
         lambda r, d: (_u(r, 7), _u(r, 7), 6, -1, -3), ("x", "y"), ("x", "y")),
    Case("slice_bounds_negative_at_run_time", K.slices_with_bounds_known_at_run_time,
         lambda r, d: (_u(r, 5), np.zeros(5), -2, -7), ("x",), ("return", "y")),
    Case("slice_bounds_past_the_end_at_run_time", K.slices_with_bounds_known_at_run_time,
         lambda r, d: (_u(r, 5), np.zeros(5), 7, 9), ("x",), ("return", "y")),
    Case("slice_bounds_inside_at_run_time", K.slices_with_bounds_known_at_run_time,
         lambda r, d: (_u(r, 5), np.zeros(5), 2, -3), ("x",), ("return", "y")),
    Case("numbers_taken_by_their_truth", K.numbers_taken_by_their_truth,
         lambda r, d: (np.array([0.5, 0.7, 1.5, 2.0]), np.array([1.0, 2.0, 0.5, 3.0]),
                       np.array([1.0, 0.0, 0.0, 2.0])), ("x", "y"), ("y",)),
    Case("abs_of_integers", K.abs_of_integers, lambda r, d: (_u(r, 6), np.zeros(6)), ("x",),
         ("y",)),
    Case("return_none", K.returns_none,
         lambda r, d: (np.array([1.0, 2.0, 6.0, 3.0]), np.zeros(4)), ("x",), ("y",)),
    Case("comparisons_as_numbers", K.comparisons_as_numbers,
         lambda r, d: (np.array([0.5, 1.5, 0.8, 3.0]), np.zeros(4)), ("x",), ("y",)),
    Case("branch_of_another_shape_not_taken", K.branches_of_other_shapes,
         lambda r, d: (_u(r, 6), np.zeros(5), 6), ("x",), ("return", "y")),
    Case("branch_of_another_shape_taken", K.branches_of_other_shapes,
         lambda r, d: (_u(r, 6), np.zeros(5), 5), ("x",), ("return", "y")),
    Case("array_branch", K.array_or_scalar_branch, lambda r, d: (_u(r, 6), 0.7, 3),
         ("x", "a"), ("return", "x")),
    Case("scalar_branch", K.array_or_scalar_branch, lambda r, d: (_u(r, 6), 0.7, 2),
         ("x", "a"), ("return", "x")),
    Case("comparisons_and_powers_of_ints", K.comparisons_and_powers_of_ints,
         lambda r, d: (_u(r, 5), np.zeros(5), -2), ("x",), ("y",)),
    Case("comparisons_and_powers_of_ints_2", K.comparisons_and_powers_of_ints,
         lambda r, d: (_u(r, 5), np.zeros(5), 3), ("x",), ("y",)),
    Case("empty_slices", K.empty_slices, lambda r, d: (_u(r, 7), _u(r, 7), 3, 6), ("x", "z"),
         ("z",)),
    Case("big_integer_constants", K.big_integer_constants,
         lambda r, d: (_u(r, 3), np.zeros(3), 1), ("x",), ("y",)),
    Case("bound_only_in_loops", K.bound_only_in_loops, lambda r, d: (_u(r, 4), _u(r, 4), 3),
         ("x", "z"), ("z",)),
    Case("read_before_bound_in_a_trip", K.read_before_bound_in_a_trip,
         lambda r, d: (_u(r, 5), _u(r, 5)), ("x", "z"), ("z",)),
    Case("returns_from_a_loop_then_reads", K.returns_from_a_loop_then_reads,
         lambda r, d: (_u(r, 4), 3, 0.5), ("x",)),
    Case("returns_from_a_loop_then_reads_early", K.returns_from_a_loop_then_reads,
         lambda r, d: (_u(r, 4), 3, 20.0), ("x",)),
    Case("class_tests_guard_a_loop", K.class_tests_guard_a_loop,
         lambda r, d: (_u(r, 7), 0.8, np.array([1.0, np.inf, np.nan, -np.inf, 2.0, 0.5, 3.0]),
                       np.zeros(7)), ("x", "w")),
    Case("class_test_of_a_call", K.class_test_of_a_call,
         lambda r, d: (_u(r, 4), _u(r, 4)), ("x", "y")),
    Case("class_tests_stop_a_loop", K.class_tests_guard_a_loop,
         lambda r, d: (np.array([0.5, 0.7, 30.0, 0.2]), 9.0, np.ones(4), np.zeros(4)),
         ("x", "w")),
    Case("continues_side_by_side", K.continues_side_by_side,
         lambda r, d: (_u(r, 12), 1.1, np.zeros(12)), ("x", "w")),
    Case("specialisations_named_apart", K.specialisations_named_apart,
         lambda r, d: (_u(r, 4), _u(r, 4), _u(r, 4)), ("x", "y")),
    Case("transposed_elements", K.transposed_elements,
         lambda r, d: (r.uniform(-1.0, 1.0, (4, 4)), np.zeros(4)), ("A",)),
    Case("slices_filled_with_a_reduction", K.slices_filled_with_a_reduction,
         lambda r, d: (_u(r, 4), r.uniform(-1.0, 1.0, (4, 4)), _u(r, 4), _u(r, 16).reshape(4, 4)),
         ("x", "A", "y", "B"), ("y", "B")),
    Case("copies_as_operands", K.copies_as_operands,
         lambda r, d: (r.uniform(-1.0, 1.0, (3, 3)), np.zeros((3, 3)), _u(r, 3)), ("A", "y"),
         ("return", "B", "y")),
    Case("extrema_of_three_or_more", K.extrema_of_three_or_more,
         lambda r, d: (np.array([0.3, 0.9, 0.1, 0.7, 0.2, 0.8, 0.45]), np.zeros(7)), ("x",),
         ("y",)),
    Case("argument_bound_then_written_in_a_loop", K.argument_bound_then_written_in_a_loop,
         lambda r, d: (np.eye(3) + 0.1, _u(r, 3), _u(r, 3)), ("A", "y")),
    Case("read_after_a_first_trip_decides", K.read_after_a_first_trip_decides,
         lambda r, d: (np.ones(3), np.array([1.0, 2.0, 0.5]), 4, 1e-3), ("x", "b")),
    Case("read_after_a_first_trip_decides_no_trip", K.read_after_a_first_trip_decides,
         lambda r, d: (np.ones(3), np.array([1.0, 2.0, 0.5]), 0, 1e-3), ("x", "b")),
    Case("read_after_a_called_test_decides", K.read_after_a_called_test_decides,
         lambda r, d: (np.array([4.0, 3.0]) + _u(r, 2), 1e-3), ("x",)),
    Case("bound_read_from_the_target", K.bound_read_from_the_target,
         lambda r, d: (np.concatenate([_u(r, 3), [2.5], _u(r, 3)]),
                       np.array([[0.5, 0.4, 0.1], [0.3, 0.6, 0.2], [0.8, 0.85, 0.4]])),
         ("x", "A"), ("x", "A")),
    Case("bound_from_a_called_kernel", K.bound_from_a_called_kernel,
         lambda r, d: (_u(r, 6), np.array([2.5, 0.7, 1.3])), ("x", "y"), ("x",)),
    Case("bools_of_called_kernels", K.bools_of_called_kernels, lambda r, d: (_u(r, 8),),
         ("x",)),
    Case("scalar_parameter_augmented_in_a_callee", K.scalar_parameter_augmented_in_a_callee,
         lambda r, d: (_u(r, 5),), ("x",)),
    Case("stored_names_read_at_their_store", K.stored_names_read_at_their_store,
         lambda r, d: (_u(r, 4), _u(r, 4)), ("x", "y"), ("x", "y")),
    Case("allocated_ahead_from_a_name_a_loop_binds",
         K.allocated_ahead_from_a_name_a_loop_binds, lambda r, d: (_u(r, 3), 2), ("x",)),
    Case("allocated_ahead_from_a_name_a_loop_binds_no_trip",
         K.allocated_ahead_from_a_name_a_loop_binds, lambda r, d: (_u(r, 3), 0), ("x",)),
    Case("allocated_ahead_from_the_branch", K.allocated_ahead_from_the_branch,
         lambda r, d: (_u(r, 3), 2), ("x",)),
    Case("allocated_ahead_from_the_branch_not_taken", K.allocated_ahead_from_the_branch,
         lambda r, d: (_u(r, 3), -10), ("x",)),
    Case("bound_to_an_empty_slice", K.bound_to_an_empty_slice, lambda r, d: (_u(r, 4), 3),
         ("x",)),
    Case("bound_to_a_slice", K.bound_to_an_empty_slice, lambda r, d: (_u(r, 4), 0), ("x",)),
    Case("zeroth_powers_at_a_zero_base", K.zeroth_powers,
         lambda r, d: (np.array([0.0, 0.5, 1.5]), 0.0, np.zeros(3)), ("x",), ("y",)),
]

# elementary functions: one scalar kernel per spelling, return-only
_FN_ARGS = {
    "fn_pow_op": (0.7, 1.3), "fn_np_power": (0.7, 1.3),
    "fn_np_minimum": (0.7, 1.3), "fn_builtin_min": (1.3, 0.7),
    "fn_np_maximum": (0.7, 1.3), "fn_builtin_max": (1.3, 0.7),
}
for _name in [n for n in dir(K) if n.startswith("fn_")]:
    _fn = getattr(K, _name)
    _nargs = len(inspect.signature(_fn).parameters)
    if _nargs == 1:
        for _a in ((0.7,) if "abs" not in _name else (0.7, -0.7)):
            CASES.append(Case(f"{_name}({_a})", _fn, lambda r, d, _a=_a: (_a,), ("a",)))
    else:
        CASES.append(Case(_name, _fn, lambda r, d, _v=_FN_ARGS[_name]: _v, ("a", "b")))
for _c in CASES:
    if _c.outputs is None and _c.effective is None:
        _c.effective = ("return",)


def _params(cases):
    out = []
    for case in cases:
        for dt in INT_DTYPES if case.uses_indices else (np.int64,):
            out.append(pytest.param(case, dt, id=f"{case.name}-{np.dtype(dt).name}"
                                    if case.uses_indices else case.name))
    return out


PARAMS = _params(CASES)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _args(case, int_dtype, seed=1):
    return case.make(np.random.default_rng(seed), int_dtype)


def _copy(args):
    return tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args)


def _wrt_names(case):
    return tuple(case.params[w] if isinstance(w, int) else w for w in case.wrt)


def _array_outs(case):
    return [o for o in case.outs if o != "return"]


def _seeds(case, args, rng):
    bars = {o + "_bar": rng.standard_normal(np.shape(args[case.index(o)])) for o in _array_outs(case)}
    if "return" in case.outs:
        bars["out_bar"] = float(rng.uniform(0.5, 1.5))
    return bars


def _loss(case, args, seeds):
    """<w, F(args)> for the seeds (kernel run on copies)."""
    a = list(_copy(args))
    ret = case.kernel(*a)
    total = 0.0
    for o in _array_outs(case):
        total += float(np.sum(seeds[o + "_bar"] * a[case.index(o)]))
    if "return" in case.outs:
        total += seeds.get("out_bar", 1.0) * float(ret)
    return total


def _fd_gradient(case, args, seeds, name):
    """per-component central difference of <w, F> with respect to argument ``name``."""
    i = case.index(name)
    value = args[i]

    def at(perturbed):
        a = list(args)
        a[i] = perturbed
        return _loss(case, a, seeds)

    if not isinstance(value, np.ndarray):
        return (at(value + FD_H) - at(value - FD_H)) / (2 * FD_H)
    grad = np.zeros(value.shape)
    for j in np.ndindex(value.shape):
        plus, minus = value.copy(), value.copy()
        plus[j] += FD_H
        minus[j] -= FD_H
        grad[j] = (at(plus) - at(minus)) / (2 * FD_H)
    return grad


def _assert_close(got, want, what, rtol=FD_RTOL):
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), f"{what}: expected an array, got {type(got)}"
        assert got.shape == want.shape and got.dtype == np.float64, what
        scale = max(float(np.max(np.abs(want))), 1e-3) if want.size else 1.0
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=what)
    else:
        assert isinstance(got, float), f"{what}: a scalar wrt must be a Python float, got {type(got)}"
        assert got == pytest.approx(want, rel=rtol, abs=rtol * max(abs(want), 1e-3)), what


def _assert_same_state(got, want, what):
    for k, (g, w) in enumerate(zip(got, want)):
        if isinstance(w, np.ndarray):
            assert g.dtype == w.dtype and g.shape == w.shape, (what, k)
            np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-15, err_msg=f"{what}: arg {k}")
        else:
            assert g == w, (what, k)


def _diff(case):
    return adsrc.differentiate(case.kernel, wrt=case.wrt, outputs=case.outputs)


# ---------------------------------------------------------------------------
# (a) check_grads, (b) full adjoint vs per-component FD
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case,int_dtype", PARAMS)
def test_tangent_and_adjoint_pass_the_dot_product_test(case, int_dtype):
    """(c) ``<w, J v>`` from ``f.tangent`` against ``<J^T w, v>`` from ``f.adjoint``: two
    transformations, no finite differences (the tangent keeps no tape, so a misplaced branch
    record of the adjoint shows here too)."""
    rng = np.random.default_rng(7)
    args = _args(case, int_dtype)
    wrt = [case.params[w] if isinstance(w, int) else w for w in case.wrt]
    v = {p: rng.standard_normal(np.shape(args[case.index(p)])) for p in wrt}
    v = {p: float(d) if np.ndim(d) == 0 else d for p, d in v.items()}
    f = adsrc.differentiate(case.kernel, wrt=case.wrt, outputs=case.outputs)
    tangents = dict(zip(case.outs, f.tangent(*_copy(args), **{p + "_dot": np.copy(d)
                                                             for p, d in v.items()})))
    w = {out: rng.standard_normal(np.shape(t)) for out, t in tangents.items()}
    bars = {out + "_bar": np.copy(w[out]) for out in case.outs if out != "return"}
    if "return" in case.outs:
        bars["out_bar"] = float(w["return"])
    grads = f.adjoint(*_copy(args), **bars)
    forward = sum(float(np.sum(w[out] * tangents[out])) for out in case.outs)
    reverse = sum(float(np.sum(g * v[p])) for p, g in zip(wrt, grads))
    assert reverse == pytest.approx(forward, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("case,int_dtype", PARAMS)
def test_check_grads(case, int_dtype):
    args = _args(case, int_dtype)
    before = _copy(args)
    report = adsrc.check_grads(case.kernel, args, wrt=case.wrt, outputs=case.outputs, rtol=1e-7)
    assert report is not None
    _assert_same_state(args, before, "check_grads leaves the caller's arrays")


@pytest.mark.parametrize("case,int_dtype", PARAMS)
def test_adjoint_against_finite_differences(case, int_dtype):
    """every wrt gradient and every output array's bar (the adjoint of its initial value),
    component by component."""
    args = _args(case, int_dtype)
    seeds = _seeds(case, args, np.random.default_rng(7))
    passed = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in seeds.items()}
    got = _diff(case).adjoint(*_copy(args), **passed)
    wrt = _wrt_names(case)
    assert isinstance(got, tuple) and len(got) == len(wrt)
    for name, g in zip(wrt, got):
        _assert_close(g, _fd_gradient(case, args, seeds, name), f"{case.name}: {name}_bar")
        if name in case.outs:
            assert g is passed[name + "_bar"], f"{name}: an output bar is returned in place"
    for o in _array_outs(case):
        if o not in wrt:  # not returned, but its bar holds the adjoint of the initial value
            _assert_close(passed[o + "_bar"], _fd_gradient(case, args, seeds, o),
                          f"{case.name}: {o}_bar (output not in wrt)")


SCALAR_RETURN = [p for p in PARAMS if "return" in p.values[0].outs]


@pytest.mark.parametrize("case,int_dtype", SCALAR_RETURN)
def test_grad_against_finite_differences(case, int_dtype):
    args = _args(case, int_dtype)
    only_return = Case(case.name, case.kernel, case.make, case.wrt, outputs=("return",))
    seeds = {"out_bar": 1.0}
    got = adsrc.grad(case.kernel, wrt=case.wrt)(*_copy(args))
    wrt = _wrt_names(case)
    assert isinstance(got, tuple) and len(got) == len(wrt)
    for name, g in zip(wrt, got):
        _assert_close(g, _fd_gradient(only_return, args, seeds, name), f"{case.name}: grad {name}")
    value, got2 = adsrc.value_and_grad(case.kernel, wrt=case.wrt)(*_copy(args))
    assert value == pytest.approx(float(case.kernel(*_copy(args))), rel=1e-13)
    for g, g2 in zip(got, got2):
        np.testing.assert_allclose(g2, g, rtol=1e-14)


# ---------------------------------------------------------------------------
# state after adjoint(), semantics of the bars
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case,int_dtype", PARAMS)
def test_adjoint_leaves_primal_state(case, int_dtype):
    args = _args(case, int_dtype)
    seeds = _seeds(case, args, np.random.default_rng(8))
    f = _diff(case)
    a_adj, a_pri = _copy(args), _copy(args)
    f.adjoint(*a_adj, **seeds)
    r = case.kernel(*a_pri)
    _assert_same_state(a_adj, a_pri, f"{case.name}: arrays after adjoint()")
    a_call = _copy(args)
    assert f(*a_call) == r  # the primal through the wrapper
    _assert_same_state(a_call, a_pri, f"{case.name}: arrays after f()")


def _mutated(case, args):
    after = _copy(args)
    case.kernel(*after)
    return {name for name, a, b in zip(case.params, args, after)
            if isinstance(a, np.ndarray) and not np.array_equal(a, b)}


def _accumulating(case, args):
    """wrt arrays whose bars are incremented: neither outputs nor mutated (the bar of a mutated
    array holds the adjoint of its initial value on return, docs/API.md)."""
    mutated = _mutated(case, args)
    return [n for n in _wrt_names(case)
            if n not in case.outs and n not in mutated and isinstance(args[case.index(n)],
                                                                      np.ndarray)]


ACCUMULATING = [p for p in PARAMS if _accumulating(p.values[0], _args(p.values[0], p.values[1]))]


@pytest.mark.parametrize("case,int_dtype", ACCUMULATING)
def test_other_wrt_bars_are_incremented(case, int_dtype):
    args = _args(case, int_dtype)
    rng = np.random.default_rng(9)
    seeds = _seeds(case, args, rng)
    acc = _accumulating(case, args)
    start = {n + "_bar": rng.standard_normal(np.shape(args[case.index(n)])) for n in acc}
    f = _diff(case)
    fresh = dict(zip(_wrt_names(case), f.adjoint(*_copy(args), **{k: (v.copy() if isinstance(
        v, np.ndarray) else v) for k, v in seeds.items()})))
    passed = {**{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in seeds.items()},
              **{k: v.copy() for k, v in start.items()}}
    got = dict(zip(_wrt_names(case), f.adjoint(*_copy(args), **passed)))
    for n in acc:
        assert got[n] is passed[n + "_bar"], f"{n}: the bar passed in is returned"
        np.testing.assert_allclose(got[n], start[n + "_bar"] + fresh[n], rtol=1e-12, atol=1e-14,
                                   err_msg=f"{case.name}: {n}_bar must be incremented")
        assert not np.allclose(got[n], fresh[n]), "the starting bar was not added"


@pytest.mark.parametrize("lo, hi", [(1, 10), (0, 11), (2, 3), (3, 3), (5, 2), (4, 9)])
def test_reversed_ranges_run_as_python_runs_them(lo, hi):
    """adsrc rewrites reversed(range(a, b, s)) into a downward range (adsrc/frontend/fence.py):
    the primal it compiles and the tangent agree with Python's reversed, empty ranges included
    (the complex step of the plain kernel, which runs Python's own reversed)."""
    rng = np.random.default_rng(9)
    x, y, x_dot = (_u(rng, 12) for _ in range(3))
    f = adsrc.differentiate(K.reversed_range_steps, wrt=("x",), outputs=("y",))
    want = y.copy()
    K.reversed_range_steps(x, want, lo, hi)
    got = y.copy()
    f.primal(x, got, lo, hi)
    np.testing.assert_array_equal(got, want)
    shifted = y.astype(complex)
    K.reversed_range_steps(x + 1e-30j * x_dot, shifted, lo, hi)
    (y_dot,) = f.tangent(x, y.copy(), lo, hi, x_dot=x_dot)
    np.testing.assert_allclose(y_dot, shifted.imag / 1e-30, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("name", ["negative_constant_indices", "periodic_stencil",
                                  "periodic_sweeps", "periodic_2d", "negative_index_variables"])
def test_negative_indices_count_from_the_end_in_the_compiled_primal(name):
    """Compiled code does not wrap indices by itself (wraparound is off); adsrc rewrites
    constant negative ones and wraps those that may be negative at run time (x[i - 1] at
    i = 0), so the compiled primal agrees with Python's, exactly (it read and wrote before
    the arrays' start).  On the Python backend, the generated primal against the kernel."""
    _assert_primal_is_pythons(name)


@pytest.mark.parametrize("name", ["slices_read_old_values", "slice_negative_step",
                                  "tuple_assignment", "iterate_zipped", "early_return_in_loops",
                                  "early_return_none", "early_return_at_top",
                                  "early_bare_return", "recursive_early_return",
                                  "conditional_expressions", "swapped_local_arrays",
                                  "where_clip_diag", "mean_max_min", "axis_reductions",
                                  "floors_and_remainders"])
def test_statements_rewritten_for_their_python_meaning_keep_it(name):
    """A whole-array statement reading its target elsewhere reads a copy of the old values (as
    NumPy's temporary); a negative step runs down from the last element; a tuple assignment
    evaluates every value before storing one; an early return leaves its loops and skips what
    follows (a flag, breaks and guards); a loop over zip stops at the shorter array and reads
    each element when its trip starts; np.where is a conditional expression per element,
    floats' // and % have Python's signs, and math.floor is an int.  The derivatives are checked above against finite
    differences of the kernel run by Python; here the values the generated primal computes,
    against Python's, exactly."""
    _assert_primal_is_pythons(name)


@pytest.mark.parametrize("name", ["broadcasting", "kept_dimensions", "constant_arrays",
                                  "signs_differences_methods", "running_sums",
                                  "running_sums_elsewhere", "array_gathers",
                                  "rolled_and_elementary", "momentum_names"])
def test_broadcasts_signs_and_differences_read_as_numpy(name):
    """A 1-D array broadcast along a 2-D one (A * d, d[:, None], np.outer, a row of the target
    read while the target is written, reductions with keepdims=True) reads the elements
    NumPy's broadcasting reads; np.sign, np.diff, np.roll, arrays of constants (np.ones,
    np.full, np.eye), np.cumsum and np.cumprod compute NumPy's values (also inside a product, a
    reduction along an axis, np.where and a broadcast); a gather of the target reads its old
    values; a = b of arrays copies where NumPy names.  The generated primal
    against Python's, to rounding: NumPy's BLAS sums A @ x and np.dot in another order than
    the compiled loop (which order depends on the processor: OpenBLAS picks its kernel when it
    loads), NumPy's np.tanh, np.sinh, np.arctan... are its own code, not the C library's
    functions that compiled code calls (np.tanh differs in the last bit for 30% of
    arguments; on a processor with AVX-512, NumPy's other functions too), and a misread
    element would be off by far more."""
    _assert_primal_is_pythons(name, rtol=1e-13)


def _assert_primal_is_pythons(name, rtol=0.0):
    case = next(case for case in CASES if case.name == name)
    args = case.make(np.random.default_rng(10), np.int32)
    want = [np.copy(arg) if isinstance(arg, np.ndarray) else arg for arg in args]
    returned = case.kernel(*want)
    got = [np.copy(arg) if isinstance(arg, np.ndarray) else arg for arg in args]
    mine = adsrc.differentiate(case.kernel, wrt=case.wrt, outputs=case.outputs).primal(*got)
    assert (mine is None) == (returned is None)
    if returned is not None:
        np.testing.assert_allclose(mine, returned, rtol=rtol, atol=0.0)
    for mine, python in zip(got, want):
        np.testing.assert_allclose(mine, python, rtol=rtol, atol=0.0)


def test_output_bar_holds_adjoint_of_initial_value_by_hand():
    """x += alpha * dinv * r: x_final = x0 + alpha dinv r, so x_bar stays, and
    dinv_bar += alpha r x_bar, r_bar += alpha dinv x_bar, alpha_bar = sum(dinv r x_bar)."""
    rng = np.random.default_rng(3)
    x, dinv, r = rng.standard_normal((3, 5))
    alpha = 0.3
    w = rng.standard_normal(5)
    x_bar, d0, r0 = w.copy(), rng.standard_normal(5), rng.standard_normal(5)
    dinv_bar, r_bar = d0.copy(), r0.copy()
    f = adsrc.differentiate(K.axpy_whole, wrt=("dinv", "r", "alpha", "x"), outputs="x")
    xx = x.copy()
    got = f.adjoint(xx, dinv.copy(), r.copy(), alpha, x_bar=x_bar, dinv_bar=dinv_bar,
                    r_bar=r_bar)
    np.testing.assert_allclose(xx, x + alpha * dinv * r, rtol=1e-15)
    assert got[0] is dinv_bar and got[1] is r_bar and got[3] is x_bar
    np.testing.assert_allclose(dinv_bar, d0 + alpha * r * w, rtol=1e-14)
    np.testing.assert_allclose(r_bar, r0 + alpha * dinv * w, rtol=1e-14)
    assert isinstance(got[2], float)
    assert got[2] == pytest.approx(float(np.sum(dinv * r * w)), rel=1e-13)
    np.testing.assert_allclose(x_bar, w, rtol=0, atol=0)


def test_output_bar_of_overwritten_array_by_hand():
    """r[:] = b - y*y overwrites r: r_bar on return is 0 (adjoint of the initial value)."""
    rng = np.random.default_rng(4)
    b, y, r = rng.standard_normal((3, 5))
    w = rng.standard_normal(5)
    r_bar = w.copy()
    b_bar, y_bar = rng.standard_normal((2, 5))
    b0, y0 = b_bar.copy(), y_bar.copy()
    f = adsrc.differentiate(K.residual_whole, wrt=("b", "y"), outputs=("r",))
    f.adjoint(b.copy(), y.copy(), r, r_bar=r_bar, b_bar=b_bar, y_bar=y_bar)
    np.testing.assert_array_equal(r_bar, np.zeros(5))
    np.testing.assert_allclose(b_bar, b0 + w, rtol=1e-14)
    np.testing.assert_allclose(y_bar, y0 - 2 * y * w, rtol=1e-14)


def relaxed_energy(x, b, n):
    for it in range(n):
        x[:] = x + 0.25 * (b - x * x)
    return np.dot(x, x)


def relaxed_energy_checkpointed(x, b, n):
    for it in adsrc.checkpointed(range(n), snapshots=2):
        x[:] = x + 0.25 * (b - x * x)
    return np.dot(x, x)


@pytest.mark.parametrize("kernel", [relaxed_energy, relaxed_energy_checkpointed])
def test_the_bar_of_a_written_array_that_is_not_an_output_seeds_nothing(kernel):
    """x is written and wrt, the return value the only output: x_bar on return is the adjoint
    of x's initial value, whatever it held on entry (values there seeded the adjoint of x's
    final value before, which only an output's bar does)."""
    x, b = np.linspace(0.5, 1.0, 4), np.linspace(1.0, 2.0, 4)
    f = adsrc.differentiate(kernel, wrt=("x", "b"))
    x_bar = np.full(4, 7.0)
    got = f.adjoint(x.copy(), b, 5, x_bar=x_bar)
    assert got[0] is x_bar
    for position, (name, value) in enumerate((("x", x), ("b", b))):
        for i in range(4):
            moved = [x.copy(), x.copy()], [b.copy(), b.copy()]
            moved[position][0][i] += 1e-6
            moved[position][1][i] -= 1e-6
            fd = (relaxed_energy(moved[0][0], moved[1][0], 5)
                  - relaxed_energy(moved[0][1], moved[1][1], 5)) / 2e-6
            assert got[position][i] == pytest.approx(fd, rel=1e-7), (name, i)
    np.testing.assert_allclose(f.adjoint(x.copy(), b, 5)[1], got[1], rtol=1e-14)


# ---------------------------------------------------------------------------
# the default-outputs rule (docs/API.md)
# ---------------------------------------------------------------------------


def test_default_outputs_returns_nothing_are_mutated_float_arrays():
    f = adsrc.differentiate(K.returns_nothing, wrt="x")
    x, y, z = np.random.default_rng(5).uniform(0.5, 1.5, (3, 4))
    with pytest.raises(adsrc.ArgumentError):          # y and z are outputs: bars required
        f.adjoint(x.copy(), y.copy(), z.copy(), y_bar=np.ones(4))
    with pytest.raises(adsrc.ArgumentError):
        f.adjoint(x.copy(), y.copy(), z.copy(), z_bar=np.ones(4))
    (xb,) = f.adjoint(x.copy(), y.copy(), z.copy(), y_bar=np.ones(4), z_bar=np.ones(4))
    # L = sum(y1) + sum(z1), y1 = y x, z1 = z + y x^2
    np.testing.assert_allclose(xb, y + 2 * y * x, rtol=1e-14)


def test_default_outputs_returning_kernel_is_the_return_value():
    f = adsrc.differentiate(K.returns_scalar_and_mutates, wrt="x")
    x, y = np.random.default_rng(6).uniform(0.5, 1.5, (2, 4))
    with pytest.raises(adsrc.ArgumentError):          # y is not an output: no y_bar
        f.adjoint(x.copy(), y.copy(), y_bar=np.ones(4))
    (xb,) = f.adjoint(x.copy(), y.copy(), out_bar=2.0)
    np.testing.assert_allclose(xb, 2.0 * 2 * y * y * x, rtol=1e-14)   # s = sum (y x)^2
    assert adsrc.grad(K.returns_scalar_and_mutates, wrt="x")(x.copy(), y.copy()) \
        == pytest.approx(xb / 2.0, rel=1e-14)


# ---------------------------------------------------------------------------
# generated source
# ---------------------------------------------------------------------------

_KERNEL_FILE = inspect.getsourcefile(K)
with open(_KERNEL_FILE) as _fh:
    _KERNEL_LINES = _fh.read().splitlines()

SOURCE_CASES = [c for c in CASES if c.name in (
    "csr_matvec", "call_statement", "rec_sum_depth5", "if_elif_else", "while_halving",
    "slice_step", "temporaries", "loop_break", "residual_whole", "write_2d")]


@pytest.mark.parametrize("case", SOURCE_CASES, ids=[c.name for c in SOURCE_CASES])
def test_source_has_bars_and_line_comments(case):
    f = _diff(case)
    args = _args(case, np.int64)
    f.adjoint(*_copy(args), **_seeds(case, args, np.random.default_rng(0)))
    text = f.source("adjoint")
    assert isinstance(text, str)
    assert re.search(r"\b\w+_bar\b", text), "no _bar names in the generated source"
    comments = re.findall(r"# line (\d+): (.*)$", text, flags=re.M)
    assert comments, "no '# line N:' comments"
    assert "__adsrc_comment__" not in text, "a placeholder string instead of a '# line' comment"
    for number, quoted in comments:
        line = _KERNEL_LINES[int(number) - 1].strip()
        assert line == quoted.strip(), f"# line {number}: {quoted!r} is {line!r} in the file"
    # the comments point into the kernel (or its callees) in subset_kernels.py
    first = inspect.getsourcelines(case.kernel)[1]
    own = [int(n) for n, _ in comments]
    assert any(first <= n < first + len(inspect.getsourcelines(case.kernel)[0]) for n in own)
    assert f.source("adjoint", args=args) == text


def _continues_kernel(blocks, path):
    """A kernel of ``blocks`` 'if a: if b: continue' blocks in one loop body, from its file."""
    lines = ["def nested(x, w):", "    s = 0.0", "    for i in range(len(x)):"]
    for j in range(blocks):
        lines += [f"        if x[i] > {0.1 * j}:", f"            if w[{j}] * x[i] < 0.5:",
                  "                continue", f"        s += w[{j}] * x[i] * x[i]"]
    return _import_source("\n".join(lines + ["    return s", ""]), path / f"nested{blocks}.py",
                          f"nested{blocks}").nested


def test_nested_continues_make_code_linear_in_their_number(tmp_path):
    """The rest of a loop body was copied once per path through an 'if' that does not jump:
    twice per nested 'if a: if b: continue', 2^k copies for k of them (14 took 197 s to
    generate).  Now a flag guards it: the code grows by a block's worth per block."""
    sizes = {}
    rng = np.random.default_rng(5)
    for blocks in (4, 8):
        kernel = _continues_kernel(blocks, tmp_path)
        x, w = rng.uniform(0.0, 1.5, 12), rng.uniform(0.3, 1.0, blocks)
        adsrc.check_grads(kernel, [x, w], ("x", "w"), backend="python")
        f = adsrc.differentiate(kernel, wrt=("x", "w"), backend="python")
        sizes[blocks] = len(f.source("adjoint", args=(x, w)).splitlines())
    assert sizes[8] < 2.5 * sizes[4]


def _import_source(text, path, modname):
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", SOURCE_CASES, ids=[c.name for c in SOURCE_CASES])
def test_generated_module_runs_by_hand(case, tmp_path):
    """save the generated Python module to a file, import it, run <name>__fwd / <name>__rev
    with a Tape (the Cython module is built by the compile tests)."""
    f = _diff(case)
    args = _args(case, np.int64)
    seeds = _seeds(case, args, np.random.default_rng(1))
    want = dict(zip(_wrt_names(case), f.adjoint(*_copy(args), **{
        k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in seeds.items()})))
    module = _import_source(f.source("adjoint", backend="python"),
                            tmp_path / f"gen_{case.name}.py", f"gen_{case.name}")
    name = case.kernel.__name__
    fwd, rev = getattr(module, name + "__fwd"), getattr(module, name + "__rev")

    a = list(_copy(args))
    tape = Tape()
    value = fwd(*a, tape)
    primal = list(_copy(args))
    ret = case.kernel(*primal)
    _assert_same_state(a, primal, f"{case.name}: arrays after {name}__fwd")
    if "return" in case.outs:
        assert value == pytest.approx(float(ret), rel=1e-13)
    bars, call = {}, []
    for p in list(inspect.signature(rev).parameters)[len(case.params):]:
        if p == "_tape":
            call.append(tape)
        elif p.endswith("_bar") and p[:-4] in case.params:
            arr = args[case.index(p[:-4])]
            bars[p[:-4]] = seeds[p].copy() if p in seeds else np.zeros(np.shape(arr))
            call.append(bars[p[:-4]])
        else:  # the seed of the return value
            call.append(seeds["out_bar"])
    scalars = rev(*a, *call)
    assert tape.empty(), "the reverse sweep must consume the tape"
    scalar_names = [n for n in _wrt_names(case) if not isinstance(args[case.index(n)], np.ndarray)]
    for n, w in want.items():
        if isinstance(w, np.ndarray):
            np.testing.assert_allclose(bars[n], w, rtol=1e-13, atol=1e-15, err_msg=n)
    if scalar_names:
        # scalar adjoints come back as a tuple (order internal): compare the values
        assert len(scalars) == len(scalar_names)
        assert sorted(float(v) for v in scalars) == pytest.approx(
            sorted(float(want[n]) for n in scalar_names), rel=1e-13)



def _builtins_read(text):
    """The builtins generated code (Python or Cython) reads: its names outside comments and
    strings that are not attributes (np.sum) nor Python's constants."""
    read, after_dot = set(), False
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.NAME and not after_dot and hasattr(builtins, token.string):
            read.add(token.string)
        after_dot = token.type == tokenize.OP and token.string == "."
    return read - {"True", "False", "None"}


# kernels whose generated code reads the builtins the kernels do not call
BUILTIN_CASES = [c for c in CASES if c.name in (
    "array_1d", "scalars_float_int", "mean_max_min", "iterate_zipped", "functions_elementwise",
    "floors_and_remainders", "reversed_range", "numpy_methods", "mean_square", "write_2d",
    "residual_whole", "module_constants", "periodic_stencil")]


def test_every_builtin_the_generated_code_calls_is_refused_as_a_kernels_name(backend):
    """A kernel's local named as a builtin that the generated code calls, where the kernel need
    not (``range`` for a whole-array statement's loop, ``max`` for np.maximum), broke the
    generated code; such names are refused (adsrc.naming.BUILTINS_OF_GENERATED_CODE).  The
    list is written apart from the code generators: the builtins the generated adjoint and
    tangent of kernels using them read must be in it."""
    from adsrc.naming import TAKEN_BY_GENERATED_CODE
    read = set()
    for case in BUILTIN_CASES:
        f = _diff(case)
        for kind in ("adjoint", "tangent"):
            read |= _builtins_read(f.source(kind, backend=backend, args=_args(case, np.int64)))
    assert {"range", "max", "min", "abs", "AssertionError"} <= read
    # the errors compiled helpers raise (_to_int...): module-level functions, which a kernel's
    # local does not reach
    helpers_raise = {"ValueError", "OverflowError", "ZeroDivisionError", "MemoryError"}
    assert read <= TAKEN_BY_GENERATED_CODE | helpers_raise


def test_ifs_that_continue_leave_the_loop_body_shallow(backend):
    """Eight ifs that continue in one loop body: the generated code nests no deeper than one
    guard and the deepest if of the kernel (the function, the loop, a guard, two ifs: 5
    levels on the Python backend; a level more on Cython's, whose loops sit in a
    'with nogil:' block).  Moving the rest of the body into the branches of each nested it 10 and 11
    levels deep, and the code of k such ifs grew as k squared."""
    f = adsrc.differentiate(K.continues_side_by_side, wrt=("x", "w"), backend=backend)
    source = f.source("adjoint", args=(np.ones(4), 1.0, np.zeros(4)))
    depth = max(len(line) - len(line.lstrip()) for line in source.splitlines() if line.strip())
    assert depth <= 4 * (6 if backend == "cython" else 5), source
