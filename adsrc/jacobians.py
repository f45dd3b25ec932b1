"""Jacobian-vector products, and dense Jacobians of small kernels, column by column (tangent
mode) or row by row (adjoint).

``adsrc.jvp(f, wrt=...)(*args, **dots)`` is ``J v`` in tangent mode: the tangents of the outputs
for the directions ``<name>_dot=`` (see ``Differentiable.tangent``).

``adsrc.jacobian(f, wrt=..., outputs=...)(*args)`` returns the matrix ``J`` whose rows are the
output values (every output raveled, in ``outputs`` order, then concatenated) and whose columns
are the ``wrt`` inputs (likewise; a SciPy sparse matrix's are its stored values, ``A.data``).
With ``n`` input and ``m`` output values, forward mode costs one vector-mode tangent run with
``n`` directions and reverse mode ``m`` adjoint runs; ``mode="auto"`` picks forward mode when
``n <= m``.  The arguments are not modified: every run works on copies.
"""

import numpy as np

from adsrc.api import Differentiable
from adsrc.errors import AdsrcError
from adsrc.pipeline import RETURN_OUTPUT
from adsrc.runtime.arguments import check_no_keywords, signature_of, working_copies

MODES = ("auto", "forward", "reverse")


def _size(value):
    return value.size if isinstance(value, np.ndarray) else 1


def _unit(value, index):
    """The ``index``-th unit direction in the space of ``value`` (an array or a scalar)."""
    if not isinstance(value, np.ndarray):
        return 1.0
    unit = np.zeros(value.shape)        # C order, whatever the value's
    unit.flat[index] = 1.0
    return unit


def _flat(value):
    return np.ravel(value) if isinstance(value, np.ndarray) else np.array([value], dtype=float)


def jvp(f, wrt, outputs=None, backend=None):
    """A function of the kernel's arguments and the directions ``<name>_dot=`` returning the
    outputs' tangents (one per output); the arguments are mutated as ``f`` would."""
    return Differentiable(f, wrt, outputs, backend).tangent


def jacobian(f, wrt, outputs=None, backend=None, mode="auto"):
    """A function of the kernel's arguments returning its dense Jacobian (see the module)."""
    if mode not in MODES:
        raise AdsrcError(f"jacobian: unknown mode {mode!r} (available: {', '.join(MODES)})")
    kernel = Differentiable(f, wrt, outputs, backend)
    of_arrays = {}      # MatrixKernel of a call's matrices -> the derived kernel's Jacobian

    def dense_jacobian(*args, **keywords):
        check_no_keywords(kernel.fn.__name__, kernel.params, keywords)
        matrices = kernel._matrices(args)
        if matrices is not None:        # a matrix's columns are its stored values, in order
            if matrices not in of_arrays:     # one MatrixKernel per layout, kept by kernel
                of_arrays[matrices] = jacobian(matrices.inner, matrices.inner.wrt,
                                               kernel.outputs, kernel.backend, mode)
            return of_arrays[matrices](*matrices.arguments(args))
        values = dict(zip(kernel.params, args))
        kernel.check_distinct_before_copies(args)     # the runs work on copies
        outs = kernel._outputs_for(signature_of(kernel.fn.__name__, kernel.params, args))
        out_sizes = [1 if out == RETURN_OUTPUT else _size(values[out]) for out in outs]
        in_sizes = [_size(values[name]) for name in kernel.wrt]
        jac = np.zeros((sum(out_sizes), sum(in_sizes)))
        if jac.size == 0:
            return jac          # no input value, or no output value: nothing to run
        forward = mode == "forward" or (mode == "auto" and sum(in_sizes) <= sum(out_sizes))
        if forward:
            # J times the identity: one vector-mode sweep with every unit direction at once
            total, column, stacks = sum(in_sizes), 0, {}
            for name, size in zip(kernel.wrt, in_sizes):
                stack = np.zeros((total,) + np.shape(values[name]))
                stack.reshape(total, size)[column:column + size] = np.eye(size)
                stacks[name + "_dot"] = stack
                column += size
            tangents = kernel.tangent(*working_copies(args), **stacks)
            return np.concatenate([np.reshape(t, (total, -1)) for t in tangents], axis=1).T
        row = 0
        for out, size in zip(outs, out_sizes):
            for index in range(size):
                seeds = {other + "_bar": np.zeros(np.shape(values[other]))
                         for other in outs if other != RETURN_OUTPUT}
                if RETURN_OUTPUT in outs:
                    seeds["out_bar"] = 1.0 if out == RETURN_OUTPUT else 0.0
                if out != RETURN_OUTPUT:
                    seeds[out + "_bar"] = _unit(values[out], index)
                grads = kernel.adjoint(*working_copies(args), **seeds)
                jac[row, :] = np.concatenate([_flat(g) for g in grads])
                row += 1
        return jac

    return dense_jacobian
