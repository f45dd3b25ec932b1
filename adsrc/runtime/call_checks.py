"""The checks of one kind of call (adjoint or tangent) of one compiled specialisation.

Before anything runs, a call checks its arguments and their companions (``x_bar=`` adjoints or
``x_dot=`` directions; :mod:`adsrc.runtime.arguments` says what is checked and why).  Which
arguments are arrays, which of them the kernel writes, which companions a call may be given:
all of that depends only on the specialisation, so it is worked out once here, and a call
makes a single pass over its arrays.  On a small kernel, the general checks asked anew at
every call took a large share of the time the compiled code did.

A call that fails a check raises the general check's error, so both routes say the same thing.
A call of a compiled module asks its arrays first in one pass of C
(:mod:`adsrc.runtime.compiled_call_check`), and takes the pass in Python only when that says no.
"""

import numpy as np

from adsrc.errors import ArgumentError
from adsrc.runtime.arguments import (check_bar, check_contiguous, check_distinct, check_float,
                                     check_writeable, memory_owner)


class CallChecks:
    """The checks of the calls of one specialisation that pass ``<param><suffix>`` companions.

    ``signature`` is the specialisation's argument types; ``written`` the parameters it writes;
    ``companions`` the parameters that take a companion, in the order the compiled code takes
    them; ``allowed`` the companion keys a call may pass; ``written_companions`` the parameters
    whose companions the call writes in place (so they must be writeable); ``what`` names a
    companion in errors (``hint`` is added to the error for an unknown key); ``contiguous``:
    the compiled backend's typed memoryviews take C-contiguous arrays only.  ``buffers_ok``: the compiled check of a call's
    arrays (for the compiled backend).
    """

    def __init__(self, kernel_name, params, signature, written, companions, suffix, allowed,
                 written_companions, what, hint="", contiguous=True, buffers_ok=None):
        self.kernel_name = kernel_name
        self.params = list(params)
        self.written = frozenset(written)
        self.suffix = suffix
        self.allowed = frozenset(allowed)
        self.what = what
        self.hint = hint
        self.contiguous = contiguous
        self._arrays = tuple((param, position, param in self.written)
                             for position, (param, kind) in enumerate(zip(params, signature))
                             if kind.is_array)
        self._companions = tuple((param, param + suffix, self.params.index(param),
                                  signature[self.params.index(param)].is_array)
                                 for param in companions)
        self._written_names = self.written | {param + suffix for param in written_companions}
        self._buffers_ok = buffers_ok
        # what buffers_ok is told of the argument arrays: the companions' entries are added
        # per call, for the ones given
        self._array_names = tuple(param for param, _, _ in self._arrays)
        self._array_flags = tuple(written for _, _, written in self._arrays)
        self._array_index = {position: index
                             for index, (_, position, _) in enumerate(self._arrays)}

    def __call__(self, args, given):
        """(the argument arrays by name, the companions in the compiled code's order; zeros
        for the ones not given), after checking every argument and companion; raises
        ArgumentError and changes nothing when one is wrong."""
        for key, value in given.items():
            if value is None:       # not "not given": an output's seed the caller meant to pass
                raise ArgumentError(f"{self.kernel_name}: {key}=None; pass a float64 array "
                                    f"(a float for a scalar argument)")
        if self._buffers_ok is not None:
            checked = self._checked_in_c(args, given)
            if checked is not None:
                return checked
        return self._checked_in_python(args, given)

    def _checked_in_c(self, args, given):
        """As ``__call__``, when the compiled check passes every array; None when it does not
        (or a key is not one this call takes), for the pass in Python to say why."""
        arrays = [args[position] for _, position, _ in self._arrays]
        writable, written = list(self._array_flags), list(self._array_flags)
        shaped_like = [-1] * len(arrays)
        companions = []
        taken = 0
        for _, key, position, is_array in self._companions:
            companion = given.get(key)
            if companion is None:
                companions.append(np.zeros_like(args[position]) if is_array else 0.0)
                continue
            if key not in self.allowed:
                return None
            taken += 1
            if not is_array:
                try:
                    companions.append(check_float(self.kernel_name, key, companion,
                                                  f"a {self.what}"))
                except ArgumentError:
                    return None     # the pass in Python raises the error it meets first
                continue
            arrays.append(companion)
            writable.append(key in self._written_names)
            written.append(key in self._written_names)
            shaped_like.append(self._array_index[position])
            companions.append(companion)
        if taken != len(given) or not self._buffers_ok(
                tuple(arrays), tuple(writable), tuple(written), tuple(shaped_like), np.ndarray):
            return None
        return dict(zip(self._array_names, arrays[:len(self._array_names)])), companions

    def _checked_in_python(self, args, given):
        """As ``__call__``, asking NumPy array by array: the route that names what is wrong."""
        name = self.kernel_name
        arrays = {}
        owners = set()
        for param, position, written in self._arrays:
            value = args[position]
            flags = value.flags
            if self.contiguous and not flags.c_contiguous:
                check_contiguous(name, [param], [value])
            if written and not flags.writeable:
                check_writeable(name, [param], [value], self.written)
            if written:
                check_not_overlapping_itself(name, param, value, flags)
            arrays[param] = value
            owners.add(_owner_id(value, flags))
        for key in given:
            if key not in self.allowed:
                takes = ", ".join(sorted(self.allowed)) or f"no array {self.what}s"
                raise ArgumentError(f"{name}: unexpected {self.what} '{key}'; this call takes "
                                    f"{takes}{self.hint}")
        companions = []
        given_arrays = {}
        for param, key, position, is_array in self._companions:
            companion = given.get(key)
            if not is_array:
                companions.append(0.0 if companion is None else
                                  check_float(name, key, companion, f"a {self.what}"))
            elif companion is None:
                companions.append(np.zeros_like(args[position]))
            else:
                check_bar(name, param, args[position], companion, suffix=self.suffix,
                          written=key in self._written_names)
                flags = companion.flags
                if self.contiguous and not flags.c_contiguous:
                    check_contiguous(name, [key], [companion])
                if key in self._written_names:
                    check_not_overlapping_itself(name, key, companion, flags)
                companions.append(companion)
                given_arrays[key] = companion
                owners.add(_owner_id(companion, flags))
        if None in owners or len(owners) < len(arrays) + len(given_arrays):
            # memory that some arrays may share: ask NumPy about the pairs that matter
            check_distinct(name, {**arrays, **given_arrays}, self._written_names)
        return arrays, companions


def check_not_overlapping_itself(kernel_name, label, array, flags):
    """An array the kernel writes must hold each element in memory of its own (a view made
    with ``as_strided``, a stride of 0, may not): adsrc's code takes its elements to be
    distinct values.  A contiguous array cannot overlap itself; for the others the test is
    that each axis, the one of smallest stride first, steps over the whole of the ones before
    it, which refuses a few exotic layouts that do not overlap."""
    if flags.c_contiguous or flags.f_contiguous:
        return
    span = array.itemsize
    for stride, extent in sorted((abs(stride), extent)
                                 for stride, extent in zip(array.strides, array.shape)
                                 if extent > 1):
        if stride < span:
            raise ArgumentError(f"{kernel_name}: elements of '{label}' share memory (a view "
                                f"with strides {array.strides}), but the kernel writes it and "
                                f"adsrc takes its elements to be distinct; pass a copy")
        span = stride * extent


def _owner_id(array, flags):
    """The id of the array that allocated ``array``'s memory, or None for foreign memory;
    ``flags`` are ``array.flags``, which the caller has already asked for."""
    if array.base is None:
        return id(array) if flags.owndata else None     # the usual case, without a call
    owner = memory_owner(array)
    return None if owner is None else id(owner)
