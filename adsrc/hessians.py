"""Hessian-vector products of scalar kernels, and the Hessian as a SciPy ``LinearOperator``.

``H v`` is computed forward over reverse: the generated adjoint (``__fwd``, ``__rev``) is
differentiated once more in tangent mode (:mod:`adsrc.transformations.second_order`), and one
run of the result, with ``v`` as the tangent of the point, gives the gradient and ``H v``
together.  Nothing is regenerated when the point or the vector changes: the module is compiled
once per argument signature and kept by the :class:`~adsrc.api.Differentiable` inside.
"""

import numpy as np
from scipy.sparse.linalg import LinearOperator

from adsrc.api import Differentiable
from adsrc.errors import AdsrcError, ArgumentError
from adsrc.pipeline import HVP, RETURN_OUTPUT
from adsrc.runtime.arguments import check_float, signature_of


def _copies(args):
    return [np.array(arg, copy=True) if isinstance(arg, np.ndarray) else arg for arg in args]


class _SecondOrder:
    """The scalar kernel ``f`` with one ``wrt`` argument, and ``H v`` at given arguments."""

    def __init__(self, f, wrt, backend):
        self.kernel = Differentiable(f, wrt, outputs=(RETURN_OUTPUT,), backend=backend)
        if len(self.kernel.wrt) != 1:
            raise AdsrcError(f"{self.kernel.fn.__name__}: Hessian-vector products take one "
                             f"wrt argument, got {', '.join(self.kernel.wrt)}")
        self.wrt = self.kernel.wrt[0]
        self.position = self.kernel.params.index(self.wrt)

    def gradient_and_hvp(self, args, v):
        """``(gradient, H v)`` at ``args`` (not modified), for the direction ``v``."""
        name = self.kernel.fn.__name__
        compiled = self.kernel._compile(signature_of(name, self.kernel.params, args), mode=HVP)
        entry = compiled.entry
        point = args[self.position]
        if isinstance(point, np.ndarray):
            v = np.array(v, dtype=np.float64, copy=True)
            if v.shape != point.shape:
                raise ArgumentError(f"{name}: v has shape {v.shape}, but {self.wrt} has shape "
                                    f"{point.shape}")
        else:
            v = check_float(name, "v", v, "the direction")
        work = _copies(args)
        values = dict(zip(self.kernel.params, work))
        dots = [v if param == self.wrt else
                (np.zeros_like(values[param]) if isinstance(values[param], np.ndarray) else 0.0)
                for param in entry.dot_params]
        tape = compiled.make_tape()
        compiled.forward(*work, *dots, tape)
        bars = [np.zeros_like(values[param]) for param in entry.bar_params]
        bar_dots = [np.zeros_like(values[param]) for param in entry.bar_params]
        scalars = compiled.reverse(*work, *bars, 1.0, *dots, *bar_dots, 0.0, tape)
        if self.wrt in entry.bar_params:
            index = entry.bar_params.index(self.wrt)
            return bars[index], bar_dots[index]
        count = len(entry.scalar_bar_params)
        index = entry.scalar_bar_params.index(self.wrt)
        return float(scalars[index]), float(scalars[count + index])


def hvp(f, wrt, backend=None):
    """``hvp(f, wrt="x")(*args_with_v)``: ``H v`` for a kernel ``f`` returning a scalar.

    The returned function takes the kernel's arguments with ``v`` inserted right after the
    ``wrt`` argument (``hvp(f, wrt="x")(x, v, *rest)`` when ``x`` comes first); it returns
    ``H v`` (an array like ``x``, or a float for a scalar ``x``) and leaves the arguments as
    they were."""
    second = _SecondOrder(f, wrt, backend)

    def hessian_vector_product(*args_with_v):
        args = list(args_with_v)
        if len(args) != len(second.kernel.params) + 1:
            raise ArgumentError(f"{second.kernel.fn.__name__}: hvp takes the kernel's "
                                f"{len(second.kernel.params)} arguments and v")
        v = args.pop(second.position + 1)
        return second.gradient_and_hvp(args, v)[1]

    return hessian_vector_product


class HessianOperator(LinearOperator):
    """The Hessian of a scalar kernel at a point, as a matrix-free ``LinearOperator``.

    ``matvec``/``matmat`` run the compiled tangent of the adjoint; ``update(x)`` moves the
    point (the other arguments stay) without regenerating or recompiling anything;
    ``gradient`` is the gradient at the current point, from the last product or computed."""

    def __init__(self, second, args):
        self._second = second
        self._args = list(args)
        point = args[second.position]
        if not isinstance(point, np.ndarray) or point.ndim != 1:
            raise ArgumentError(f"{second.kernel.fn.__name__}: hessian_operator needs a 1-D "
                                f"array for '{second.wrt}'")
        self._args[second.position] = np.array(point, dtype=np.float64, copy=True)
        super().__init__(dtype=np.float64, shape=(point.size, point.size))

    def update(self, x):
        """Move the point to ``x`` (a copy is kept)."""
        current = self._args[self._second.position]
        x = np.asarray(x, dtype=np.float64)
        if x.shape != current.shape:
            raise ArgumentError(f"update: x has shape {x.shape}, expected {current.shape}")
        current[...] = x
        return self

    @property
    def gradient(self):
        return self._second.gradient_and_hvp(self._args, np.zeros(self.shape[0]))[0]

    def _matvec(self, v):
        v = np.ascontiguousarray(np.ravel(v), dtype=np.float64)
        return self._second.gradient_and_hvp(self._args, v)[1]

    def _matmat(self, vs):
        return np.column_stack([self._matvec(vs[:, k]) for k in range(vs.shape[1])])

    def _adjoint(self):
        return self        # a Hessian is symmetric


def hessian_operator(f, *args, wrt=None, backend=None):
    """The Hessian of ``f`` (returning a scalar) with respect to ``wrt`` (default: the first
    argument, a 1-D array) at ``args``, as a :class:`HessianOperator`."""
    if wrt is None:
        wrt = 0
    return HessianOperator(_SecondOrder(f, wrt, backend), args)
