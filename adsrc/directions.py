"""Stacks of k directions at the API boundary (vector mode, ``f.tangent(..., x_dot=V)`` with
``V.shape == (k,) + x.shape``).

Users stack directions along a leading axis; the generated code keeps them innermost, flat
(:mod:`adsrc.transformations.vector`), so every direction's value of one element is adjacent in
memory.  The conversion copies, so the generated code never writes a user's array: the
tangents of mutated outputs are written back into the stacks passed for them at the end, as a
single-direction call writes its ``*_dot`` arrays.
"""

import numpy as np

from adsrc.errors import ArgumentError
from adsrc.pipeline import RETURN_OUTPUT
from adsrc.runtime.arguments import check_distinct, signature_of

SUFFIX = "_dot"


def stack_size(kernel_name, params, args, dots):
    """k if the given directions are stacks of k directions, None for single directions.

    A stack has one more dimension than its argument (a float's stack is 1-D).  Raises
    :class:`~adsrc.errors.ArgumentError` for a mix of stacks and single directions, or stacks
    of different lengths."""
    values = dict(zip(params, args))
    sizes, single = {}, []
    for key, direction in dots.items():
        param = key[:-len(SUFFIX)]
        if not key.endswith(SUFFIX) or param not in values:
            continue            # an unknown key: the single-direction checks report it
        if np.ndim(direction) == np.ndim(values[param]) + 1:
            if not isinstance(direction, np.ndarray):
                raise ArgumentError(f"{kernel_name}: {key} must be a NumPy array (a stack of "
                                    "directions)")
            shape = np.shape(values[param])
            if direction.shape[1:] != shape:
                # named here: the checks of the first direction would name its shape only
                raise ArgumentError(f"{kernel_name}: {key} has shape {direction.shape}, but a "
                                    f"stack of k directions of '{param}' has shape (k,) + "
                                    f"{shape}")
            sizes[key] = direction.shape[0]
        else:
            single.append(key)
    if not sizes:
        return None
    if single:
        raise ArgumentError(f"{kernel_name}: {', '.join(sorted(single))} must be stacks of k "
                            f"directions like {', '.join(sorted(sizes))} (shape (k,) + the "
                            "argument's shape; a length-k array for a float)")
    if len(set(sizes.values())) > 1:
        counts = ", ".join(f"{key} has {size}" for key, size in sorted(sizes.items()))
        raise ArgumentError(f"{kernel_name}: every stack of directions needs the same number "
                            f"k of directions; {counts}")
    k = next(iter(sizes.values()))
    if k < 1:
        raise ArgumentError(f"{kernel_name}: a stack of directions needs at least one direction")
    return k


def flatten(stack):
    """A stack of shape ``(k,) + shape`` as a new flat float64 array, direction innermost."""
    return np.moveaxis(np.asarray(stack, dtype=np.float64), 0, -1).copy(order="C").reshape(-1)


def unflatten(flat, shape, k):
    """The inverse of :func:`flatten`: a view of shape ``(k,) + shape``."""
    return np.moveaxis(flat.reshape(tuple(shape) + (k,)), -1, 0)


def check_stacks(kernel, compiled, args, dots):
    """The checks of a single-direction call of ``compiled`` (arguments, keys, dtypes,
    shapes, contiguity, aliasing), on the first direction of every stack, then the stacks' own
    aliasing, before anything runs; returns the call's outputs."""
    firsts = {key: stack[0] for key, stack in dots.items()}
    arrays, _ = kernel._checked_with(compiled, args, firsts, SUFFIX)
    outputs = kernel._outputs_for(signature_of(kernel.fn.__name__, kernel.params, args))
    written = set(compiled.entry.written_arrays) | {param + SUFFIX for param in outputs}
    check_distinct(kernel.fn.__name__, {**arrays, **dots}, written)
    return outputs


def vector_tangent(kernel, compiled, args, dots, k):
    """``kernel.tangent(*args, **dots)`` for stacks of ``k`` directions, in one sweep of the
    vector tangent ``compiled``: one stack of k tangents per output, in ``outputs`` order."""
    name = kernel.fn.__name__
    entry = compiled.entry
    outputs = check_stacks(kernel, compiled, args, dots)
    values = dict(zip(kernel.params, args))
    flat = [flatten(dots[param + SUFFIX]) if param + SUFFIX in dots
            else np.zeros(np.size(values[param]) * k) for param in entry.dot_params]
    returned = [np.zeros(k)] if entry.returns else []

    compiled.tangent(*args, *flat, *returned, k)
    tangents = dict(zip(entry.dot_params, flat))
    out = []
    for output in outputs:
        if output == RETURN_OUTPUT:
            out.append(returned[0])
            continue
        shape = values[output].shape
        stack = unflatten(tangents[output], shape, k) if output in tangents \
            else np.zeros((k,) + shape)
        if output + SUFFIX in dots:
            dots[output + SUFFIX][...] = stack
            out.append(dots[output + SUFFIX])
        else:
            out.append(np.ascontiguousarray(stack))
    return tuple(out)
