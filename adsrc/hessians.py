"""Hessian-vector products of scalar kernels, and the Hessian as a SciPy ``LinearOperator``.

``H v`` is computed forward over reverse: the generated adjoint (``__fwd``, ``__rev``) is
differentiated once more in tangent mode (:mod:`adsrc.transformations.second_order`), and one
run of the result, with ``v`` as the tangent of the point, gives the gradient and ``H v``
together.  Nothing is regenerated when the point or the vector changes: the module is compiled
once per argument signature and kept by the :class:`~adsrc.api.Differentiable` inside.
"""

import threading

import numpy as np
from scipy.sparse.linalg import LinearOperator

from adsrc.api import Differentiable
from adsrc.checkpointed_kernels import KernelWithCheckpointedLoop
from adsrc.directions import unflatten
from adsrc.errors import AdsrcError, ArgumentError
from adsrc.pipeline import HVP, RETURN_OUTPUT
from adsrc.runtime.arguments import (check_by_position, check_float, check_no_keywords,
                                     is_sparse, signature_of, working_copies)
from adsrc.transformations.vector import VectorModeUnsupported
from adsrc.vector_pipeline import VECTOR_HVP


class _SecondOrder:
    """The scalar kernel ``f`` with one ``wrt`` argument, and ``H v`` at given arguments."""

    def __init__(self, f, wrt, backend):
        self.kernel = Differentiable(f, wrt, outputs=(RETURN_OUTPUT,), backend=backend)
        if len(self.kernel.wrt) != 1:
            raise AdsrcError(f"{self.kernel.fn.__name__}: Hessian-vector products take one "
                             f"wrt argument, got {', '.join(self.kernel.wrt)}")
        self.wrt = self.kernel.wrt[0]
        self.position = self.kernel.params.index(self.wrt)
        self._directions = None         # the flat buffer of hvps(), reused between calls
        self._lock = threading.Lock()
        self._vector_support = {}       # signature -> whether vector mode can do the kernel
        self._of_arrays = {}            # MatrixKernel of a call's matrices -> _SecondOrder

    def _with_matrices(self, args):
        """``(the MatrixKernel of the sparse matrices among args, the _SecondOrder of the kernel
        that takes their arrays)``, or None for a call without matrices: as the first-order
        calls do (:mod:`adsrc.matrix_arguments`), the derived kernel runs on the matrices'
        arrays, and a matrix ``wrt`` is differentiated with respect to its stored values."""
        matrices = self.kernel._matrices(args)
        if matrices is None:
            return None
        with self._lock:        # one MatrixKernel per layout, kept by the kernel
            if matrices not in self._of_arrays:
                self._of_arrays[matrices] = _SecondOrder(matrices.inner, matrices.inner.wrt,
                                                         self.kernel.backend)
        return matrices, self._of_arrays[matrices]

    def check_distinct_before_copies(self, args):
        """The kernel's check of a call run on copies, on the kernel taking the arrays of the
        call's sparse matrices when it has some (the kernel as written names them)."""
        with_matrices = self._with_matrices(args)
        if with_matrices is None:
            self.kernel.check_distinct_before_copies(args)
        else:
            matrices, second = with_matrices
            second.kernel.check_distinct_before_copies(matrices.arguments(args))

    def gradient_and_hvp(self, args, v, k=None):
        """``(gradient, H v)`` at ``args`` (not modified), for the direction ``v``.

        With ``k``, ``v`` holds k directions, flat and direction innermost (the layout of
        :mod:`adsrc.transformations.vector`), and so does ``H v``: one forward and one reverse
        sweep whose tangent work is k wide."""
        name = self.kernel.fn.__name__
        vector = k is not None
        with_matrices = self._with_matrices(args)
        if with_matrices is not None:
            matrices, second = with_matrices
            if self.wrt not in matrices.layouts:
                return second.gradient_and_hvp(matrices.arguments(args), v, k)
            v = matrices.companions(args, {self.wrt + "_dot": v}, "_dot")[self.wrt + "_data_dot"]
            both = second.gradient_and_hvp(matrices.arguments(args), v)
            return tuple(matrices.results(args, (value,))[0] for value in both)
        self.kernel.check_distinct_before_copies(args)     # the runs work on copies
        if isinstance(self.kernel, KernelWithCheckpointedLoop):     # one direction at a time
            return self.kernel.gradient_and_hvp(working_copies(args), self.wrt,
                                                self._checked_direction(args, v))
        compiled = self.kernel._compile(signature_of(name, self.kernel.params, args),
                                        mode=VECTOR_HVP if vector else HVP)
        entry = compiled.entry
        if not vector:                  # stacks: checked by hvps()
            v = self._checked_direction(args, v)
        work = working_copies(args)
        values = dict(zip(self.kernel.params, work))
        if vector:
            def zero(value):
                return np.zeros(np.size(value) * k)
            # the tangents the scalar functions return are out-parameters, then k
            value_dot, scalar_dots = [np.zeros(k)], [np.zeros(k) for _ in
                                                     entry.scalar_bar_params]
            fwd_extra, rev_extra, seed_dot = value_dot + [k], scalar_dots + [k], np.zeros(k)
        else:
            def zero(value):
                return np.zeros_like(value) if isinstance(value, np.ndarray) else 0.0
            fwd_extra, rev_extra, seed_dot = [], [], 0.0
        dots = [v if param == self.wrt else zero(values[param]) for param in entry.dot_params]
        tape = compiled.make_tape()
        compiled.forward(*work, *dots, *fwd_extra, tape)
        compiled.remember(tape)
        bars = [np.zeros_like(values[param]) for param in entry.bar_params]
        bar_dots = [zero(values[param]) for param in entry.bar_params]
        scalars = compiled.reverse(*work, *bars, 1.0, *dots, *bar_dots, seed_dot, *rev_extra,
                                   tape)
        compiled.release(tape)
        if self.wrt in entry.bar_params:
            index = entry.bar_params.index(self.wrt)
            return bars[index], bar_dots[index]
        count = len(entry.scalar_bar_params)
        index = entry.scalar_bar_params.index(self.wrt)
        if vector:
            return float(scalars[index]), scalar_dots[index]
        return float(scalars[index]), float(scalars[count + index])

    def _checked_direction(self, args, v):
        """``v``, one direction: a float64 copy of the point's shape, or a float."""
        point = args[self.position]
        if isinstance(point, np.ndarray):
            v = np.ascontiguousarray(_floats(self.kernel.fn.__name__, v, "the direction"))
            if v.shape != point.shape:
                raise ArgumentError(f"{self.kernel.fn.__name__}: the direction has shape "
                                    f"{v.shape}, but {self.wrt} has shape {point.shape}")
            return v
        return check_float(self.kernel.fn.__name__, "v", v, "the direction")

    def _vector_mode(self, args):
        """Whether vector mode can do this kernel (not through calls of derivative rules),
        found out once per signature."""
        if isinstance(self.kernel, KernelWithCheckpointedLoop):
            return False
        signature = signature_of(self.kernel.fn.__name__, self.kernel.params, args)
        if signature not in self._vector_support:
            try:
                self.kernel._compile(signature, mode=VECTOR_HVP)
                self._vector_support[signature] = True
            except VectorModeUnsupported:
                self._vector_support[signature] = False
        return self._vector_support[signature]

    def hvps(self, args, vs):
        """H applied to a stack of k directions ``vs`` (shape ``(k,) + x.shape``, a length-k
        array for a float ``x``) at ``args`` (not modified), in one vector-mode sweep; the
        result has the shape of ``vs``."""
        name = self.kernel.fn.__name__
        with_matrices = self._with_matrices(args)
        if with_matrices is not None:       # of a point that is an array (hvp, the operator)
            matrices, second = with_matrices
            return second.hvps(matrices.arguments(args), vs)
        shape = np.shape(args[self.position])
        vs = _floats(name, vs, "the directions")
        if vs.ndim != len(shape) + 1 or vs.shape[1:] != shape:
            raise ArgumentError(f"{name}: a stack of directions has shape (k,) + {shape}, got "
                                f"{vs.shape}")
        k = vs.shape[0]
        if not self._vector_mode(args):            # one direction at a time
            return np.stack([np.asarray(self.gradient_and_hvp(args, v)[1]) for v in vs])
        laid_out = np.moveaxis(vs, 0, -1)          # shape + (k,): flat, it is the sweep's layout
        entry = self.kernel._compile(signature_of(name, self.kernel.params, args),
                                     mode=VECTOR_HVP).entry
        if laid_out.flags.c_contiguous and laid_out.flags.writeable \
                and self.wrt not in entry.written_arrays:
            # The transpose of a C-ordered (n, k) array, as matmat gets it: the directions are
            # used in place (the sweep writes the tangent of the point only when the kernel
            # writes the point).  Copying n * k values took a fifth of the time of matmat on
            # norm_cubed at n = 10^5, k = 8 (benchmarks/hvp.py).
            return unflatten(self.gradient_and_hvp(args, laid_out.reshape(-1), k)[1], shape, k)
        with self._lock:
            # The directions go into a buffer kept between calls: at n = 10^5 and k = 8, the
            # page faults of a fresh array of n * k values cost more than the sweep itself.
            if self._directions is None or self._directions.size != vs.size:
                self._directions = np.empty(vs.size)
            np.copyto(self._directions.reshape(shape + (k,)), laid_out)
            return unflatten(self.gradient_and_hvp(args, self._directions, k)[1], shape, k)


def hvp(f, wrt, backend=None):
    """``hvp(f, wrt="x")(*args, x_dot=v)``: ``H v`` for a kernel ``f`` returning a scalar.

    The returned function takes the kernel's arguments, in the kernel's order, and the
    direction as ``<wrt>_dot=`` (the name ``f.tangent`` and ``adsrc.jvp`` give it); it returns
    ``H v`` (an array like ``x``, or a float for a scalar ``x``) and leaves the arguments as
    they were.  A ``v`` with one more dimension than ``x`` is a stack of k directions (shape
    ``(k,) + x.shape``): the k products come back stacked alike, from one vector-mode sweep.

    The direction may instead come positionally, right after the ``wrt`` argument
    (``hvp(f, wrt="x")(x, v, *rest)`` when ``x`` comes first).  The keyword is the safer
    form: a ``v`` put elsewhere among arguments of its shape cannot be told from them, and
    gives the product at other arguments, without an error."""
    second = _SecondOrder(f, wrt, backend)
    name, count = second.kernel.fn.__name__, len(second.kernel.params)
    arguments = f"{count} argument" + ("" if count == 1 else "s")
    keyword = second.wrt + "_dot"

    def hessian_vector_product(*args, **direction):
        args = list(args)
        unknown = sorted(set(direction) - {keyword})
        check_by_position(name, second.kernel.params, unknown)
        if unknown:
            raise ArgumentError(f"{name}: hvp takes the direction as {keyword}=, not "
                                f"{', '.join(key + '=' for key in unknown)}")
        if direction:
            if len(args) != count:
                raise ArgumentError(f"{name}: with {keyword}=, hvp takes the kernel's "
                                    f"{arguments}, got {len(args)}")
            v = direction[keyword]
        else:
            if len(args) != count + 1:
                raise ArgumentError(f"{name}: hvp takes the kernel's {arguments} and the "
                                    f"direction as {keyword}=")
            v = args.pop(second.position + 1)
        point = args[second.position]
        if not is_sparse(point) and np.ndim(v) == np.ndim(point) + 1:
            return second.hvps(args, v)
        return second.gradient_and_hvp(args, v)[1]

    return hessian_vector_product


def _floats(kernel_name, values, what):
    """A float64 copy of ``values`` (a direction, or a point); ArgumentError for complex
    values, which a float64 conversion would drop the imaginary part of (H is real), and for
    what is not numbers, where it raised NumPy's own error."""
    if np.iscomplexobj(values):
        raise ArgumentError(f"{kernel_name}: {what} must be real, got complex values (H is "
                            "real: take the real and imaginary parts apart)")
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ArgumentError(f"{kernel_name}: {what} must be floats ({error})") from None


class HessianOperator(LinearOperator):
    """The Hessian of a scalar kernel at a point, as a matrix-free ``LinearOperator``.

    ``matvec``/``matmat`` run the compiled tangent of the adjoint (``matmat`` in vector mode: one
    sweep for all its columns); ``update(x)`` moves the point (the other arguments stay)
    without regenerating or recompiling anything;
    ``gradient`` is the gradient at the current point, from the last product or computed.

    A point of any shape works: a LinearOperator acts on vectors, so the operator, its vectors
    and ``gradient`` hold the point's values flat, in C order (``x.ravel()``), as SciPy's
    solvers and optimisers want them; ``update`` takes the point flat or in its own shape."""

    def __init__(self, second, args):
        self._second = second
        second.check_distinct_before_copies(args)     # the point is copied
        self._args = list(args)
        point = args[second.position]
        if is_sparse(point):
            raise ArgumentError(f"{second.kernel.fn.__name__}: hessian_operator's point is an "
                                f"array: for H v with respect to the sparse matrix "
                                f"'{second.wrt}', use adsrc.hvp")
        if not isinstance(point, np.ndarray) or point.ndim == 0:
            raise ArgumentError(f"{second.kernel.fn.__name__}: hessian_operator needs an array "
                                f"for '{second.wrt}' (for a float, use adsrc.hvp)")
        self._args[second.position] = np.array(point, dtype=np.float64, copy=True, order="C")
        self._point_shape = point.shape
        super().__init__(dtype=np.float64, shape=(point.size, point.size))

    def update(self, x):
        """Move the point to ``x``, in the point's shape or flat (a copy is kept)."""
        current = self._args[self._second.position]
        x = _floats(self._second.kernel.fn.__name__, x, "the point")
        if x.shape != current.shape and x.shape != (current.size,):
            raise ArgumentError(f"update: x has shape {x.shape}, expected {current.shape} "
                                f"(or {current.size} values, flat)")
        current[...] = x.reshape(current.shape)
        return self

    @property
    def gradient(self):
        """The gradient at the point, flat."""
        zero = np.zeros(self._point_shape)
        return np.ravel(self._second.gradient_and_hvp(self._args, zero)[0])

    def _matvec(self, v):
        if np.iscomplexobj(v):          # H is real: its real and imaginary parts, apart
            return self._matvec(np.real(v)) + 1j * self._matvec(np.imag(v))
        v = np.ascontiguousarray(np.reshape(_floats(self._second.kernel.fn.__name__, v,
                                                    "the vector"), self._point_shape))
        return np.ravel(self._second.gradient_and_hvp(self._args, v)[1])

    def _matmat(self, vs):
        """H applied to the k columns of ``vs`` in one vector-mode sweep (not k matvecs)."""
        if np.iscomplexobj(vs):
            return self._matmat(np.real(vs)) + 1j * self._matmat(np.imag(vs))
        k = np.shape(vs)[1]
        stack = np.reshape(np.asarray(vs).T, (k,) + self._point_shape)
        return np.reshape(self._second.hvps(self._args, stack), (k, self.shape[0])).T

    def _adjoint(self):
        return self        # a Hessian is symmetric


def hessian_operator(f, *args, wrt=None, backend=None, **keywords):
    """The Hessian of ``f`` (returning a scalar) with respect to ``wrt`` (default: the first
    argument; an array of any shape, whose values the operator takes flat, in C order) at
    ``args``, as a :class:`HessianOperator`."""
    second = _SecondOrder(f, 0 if wrt is None else wrt, backend)
    name, params = second.kernel.fn.__name__, second.kernel.params
    check_no_keywords(name, params, keywords)
    if len(args) != len(params):    # before the point is looked for among them
        raise ArgumentError(f"{name}: hessian_operator takes the kernel's {len(params)} "
                            f"arguments ({', '.join(params)}) after it, {len(args)} given")
    return HessianOperator(second, args)
