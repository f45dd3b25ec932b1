"""The check a call of a compiled module makes of its arrays, in one pass of C.

Before an adjoint or tangent call runs anything, its arrays and their companions (``x_bar``,
``x_dot``) are checked (:mod:`adsrc.runtime.call_checks`): C-contiguous, writeable where
written, companions float64 arrays of their primal's shape, and no written array sharing memory
with another.  Asked of NumPy from Python, array by array, that was the largest part of the
layer around a call's compiled sweeps (``benchmarks/OVERHEAD.md``: tens of microseconds, where the
sweeps on a small grid take a few).  The buffer protocol answers all of it at once: a request for a C-contiguous (and writable) buffer fails
for an array that is not, its format and shape are there to compare, and its address and length
tell whether two contiguous arrays overlap, which for contiguous arrays is the same as sharing
memory.

``buffers_ok`` only says yes or no: on no, the call takes the checks in Python, which find what
is wrong and name it, so an error reads the same whichever way it was found.  It is compiled
into adsrc's runtime module beside the tape (:mod:`adsrc.compiling.cython_build`).
"""

_SOURCE = '''
from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE, PyBuffer_Release,
                             PyObject_GetBuffer)
from libc.string cimport strcmp


def buffers_ok(tuple arrays, tuple writable, tuple written, tuple shaped_like, type ndarray):
    """Whether the arrays of a call pass every check a compiled call makes of them.

    ``arrays[i]``: an instance of ``ndarray`` whose buffer is C-contiguous, and writable when
    ``writable[i]``; when ``shaped_like[i] >= 0`` (a companion), of format float64 and the
    shape of ``arrays[shaped_like[i]]``, an earlier array; when ``written[i]``, its memory
    overlaps no other array's (arrays of no elements overlap nothing)."""
    cdef Py_ssize_t n = len(arrays), i, j, d
    cdef Py_buffer view
    cdef char* starts[64]
    cdef char* ends[64]
    cdef Py_ssize_t ndims[64]
    cdef Py_ssize_t shapes[64][2]
    cdef int request
    if n > 64:
        return False
    for i in range(n):
        if not isinstance(arrays[i], ndarray):
            return False
        request = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT
        if writable[i]:
            request |= PyBUF_WRITABLE
        try:
            PyObject_GetBuffer(arrays[i], &view, request)
        except (BufferError, ValueError):    # NumPy: ValueError, "not C-contiguous", "read-only"
            return False
        ndims[i] = view.ndim
        if view.ndim <= 2:
            for d in range(view.ndim):
                shapes[i][d] = view.shape[d]
        starts[i] = <char*>view.buf
        ends[i] = starts[i] + view.len
        j = shaped_like[i]
        if j >= 0 and (strcmp(view.format, b"d") != 0 or view.ndim != ndims[j]
                       or view.ndim > 2):
            PyBuffer_Release(&view)
            return False
        PyBuffer_Release(&view)
        if j >= 0:
            for d in range(ndims[i]):
                if shapes[i][d] != shapes[j][d]:
                    return False
    for i in range(n):
        if written[i] and starts[i] != ends[i]:
            for j in range(n):
                if j != i and starts[j] != ends[j] and starts[j] < ends[i] \
                        and starts[i] < ends[j]:
                    return False
    return True
'''


def implementation():
    """``buffers_ok``'s Cython source, for the ``.pyx`` of adsrc's runtime module."""
    return _SOURCE
