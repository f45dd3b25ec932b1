"""Checks on the arguments of a call, made before anything runs.

A bad call (wrong dtype, a bar of the wrong shape, an adjoint for an argument that has none, two
arguments sharing memory that the transformation assumes distinct, a read-only array the kernel
writes, a non-contiguous array or bar for the compiled backend) raises
:class:`~adsrc.errors.ArgumentError` and leaves every user array as it was.
"""

import sys

import numpy as np

from adsrc.analyses.types import INT, type_of_value, usual_types
from adsrc.errors import ArgumentError


def is_sparse(value):
    """Whether ``value`` is a SciPy sparse matrix, without importing SciPy: none can exist while
    ``scipy.sparse`` is not imported (adsrc imports SciPy only where a kernel or an argument
    needs it: ``import adsrc`` takes 0.19 s, SciPy's sparse linear algebra 0.32 s more,
    benchmarks/OVERHEAD.md)."""
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(value)


def signature_of(kernel_name, params, args):
    """The tuple of argument types a call specialises on."""
    if len(args) != len(params):
        raise ArgumentError(f"{kernel_name}() takes {len(params)} arguments "
                            f"({', '.join(params)}), {len(args)} given")
    types = usual_signature(kernel_name, params, args)
    if types is None:
        types = tuple(type_of_value(value, f"{kernel_name}: argument '{param}'")
                      for param, value in zip(params, args))
        _check_ints(kernel_name, params, args, types)
    return types


def usual_signature(kernel_name, params, args):
    """The signature of a call whose arguments are all the usual ones (NumPy arrays of a dtype
    and ndim kernels take, floats, ints), found the cheap way every call starts; None when one
    is not (:func:`signature_of` then types or refuses it)."""
    types = usual_types(args)
    if types is not None:
        _check_ints(kernel_name, params, args, types)
    return types


def _check_ints(kernel_name, params, args, types):
    """The compiled code holds an int argument in a C integer of 64 bits (Cython raised its own
    OverflowError, naming no argument), and runs a loop over ``range(n)`` backwards from
    ``n - 1``, which wraps round for n = -2**63 (2**63 - 1 trips).  Ints are taken within
    ±2**62, where such bounds are exact.  A NumPy bool is refused: Cython's conversion to an
    integer refuses it (a raw TypeError), and so does ``range()`` in Python.  The Python
    backend is held to the same rules, so that a kernel does not take an argument on one
    backend only."""
    for param, value, kind in zip(params, args, types):
        if kind is not INT:
            continue
        if isinstance(value, np.bool_):
            raise ArgumentError(f"{kernel_name}: argument '{param}' is a NumPy bool, which "
                                f"adsrc's code cannot take as an integer; pass bool(value)")
        if not -_INT_LIMIT <= value <= _INT_LIMIT:
            raise ArgumentError(f"{kernel_name}: argument '{param}' is {value}, beyond the "
                                f"ints adsrc's code takes (±2**62: it computes in 64-bit "
                                f"integers, with room for loop bounds)")


_INT_LIMIT = 2**62


def check_bar(kernel_name, param, primal, adjoint, suffix="_bar", written=True):
    """An adjoint (``_bar``) or tangent (``_dot``) array must be a float64 array of its
    primal's shape, and writeable if the call ``written`` writes it."""
    if not isinstance(adjoint, np.ndarray) or adjoint.dtype != np.float64:
        raise ArgumentError(f"{kernel_name}: {param}{suffix} must be a float64 NumPy array")
    if adjoint.shape != primal.shape:
        raise ArgumentError(f"{kernel_name}: {param}{suffix} has shape {adjoint.shape}, but "
                            f"{param} has shape {primal.shape}")
    if written and not adjoint.flags.writeable:
        raise ArgumentError(f"{kernel_name}: {param}{suffix} must be writeable (the call "
                            f"writes it)")


def check_float(kernel_name, label, value, meaning):
    """A scalar such as ``out_bar`` or ``omega_dot``, as a float."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                      np.floating)):
        raise ArgumentError(f"{kernel_name}: {label} must be a float ({meaning}), got "
                            f"{type(value).__name__}")
    return float(value)


def check_out_bar(kernel_name, value):
    """``out_bar``, the adjoint of a scalar return value, as a float."""
    return check_float(kernel_name, "out_bar", value, "the adjoint of the return value")


def check_no_keywords(kernel_name, params, keywords):
    """A call that takes the kernel's arguments only (by position) and no keyword."""
    check_by_position(kernel_name, params, keywords)
    if keywords:
        raise ArgumentError(f"{kernel_name}: unexpected keyword arguments "
                            f"{', '.join(sorted(keywords))}")


def check_by_position(kernel_name, params, keywords):
    """Kernels take their arguments by position: a keyword naming one (``b=b``) is refused as
    that, rather than counted as a missing argument or an unknown adjoint or direction."""
    for key in keywords:
        if key in params:
            raise ArgumentError(f"{kernel_name}: pass the argument '{key}' by position: "
                                "kernels take their arguments by position")


def check_writeable(kernel_name, params, args, written):
    """The arrays the kernel writes must be writeable."""
    for param, value in zip(params, args):
        if param in written and isinstance(value, np.ndarray) and not value.flags.writeable:
            raise ArgumentError(f"{kernel_name}: '{param}' is read-only, but the kernel "
                                "writes it")


def check_distinct(kernel_name, arrays, written):
    """Arrays the kernel writes must not share memory with any other array argument.

    ``arrays`` maps a name to an array (primal arguments and adjoints alike); ``written`` names
    the ones that will be written.
    """
    names = list(arrays)
    owners = {name: memory_owner(value) for name, value in arrays.items()}
    distinct_owners = {id(owner) for owner in owners.values() if owner is not None}
    if len(distinct_owners) == len(names):
        return                  # each array allocated its own memory: none is shared
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            if first not in written and second not in written:
                continue
            if owners[first] is not owners[second] and owners[first] is not None \
                    and owners[second] is not None:
                continue        # two arrays that allocated their own memory: distinct
            if np.shares_memory(arrays[first], arrays[second]):
                raise ArgumentError(f"{kernel_name}: '{first}' and '{second}' share memory, "
                                    "but adsrc assumes the arrays a kernel writes are distinct "
                                    "from its other arrays; pass copies")


def memory_owner(array):
    """The array that allocated ``array``'s memory (itself, or the end of its chain of views),
    or None when that memory came from elsewhere (a buffer, a pointer): two arrays with
    different owners cannot share memory, and this test is what makes the check cheap on every
    call (a pair of arrays given to np.shares_memory costs about as much as the rest of a
    small adjoint call's checks)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array if array.base is None and array.flags.owndata else None


def working_copies(args):
    """Copies of the array arguments, for derivative drivers that run a kernel several times
    on the caller's values (``adsrc.jacobian``, ``adsrc.hvp``): in C order, which compiled code
    takes whatever the caller's order."""
    return [np.array(arg, copy=True, order="C") if isinstance(arg, np.ndarray) else arg
            for arg in args]


def check_contiguous(kernel_name, params, args):
    """The compiled backend takes C-contiguous arrays (typed ``[::1]`` memoryviews): arguments
    and adjoints (``params`` may name ``x_bar``) alike."""
    for param, value in zip(params, args):
        if isinstance(value, np.ndarray) and not value.flags.c_contiguous:
            raise ArgumentError(f"{kernel_name}: '{param}' is not C-contiguous; the compiled "
                                f"backend needs np.ascontiguousarray({param}) (or use "
                                f"backend='python')")
