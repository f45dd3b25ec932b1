"""Fresh names for generated variables.

User kernels may not use names that start with ``_`` (the fence rejects them), so every generated
temporary is ``_<prefix><k>`` and can never collide with a user name.  A user variable split into
several (see :mod:`adsrc.normalize.webs`) keeps a readable name instead, ``<name>_<k>``, chosen
among the names its kernel does not use; a user name never ends in ``_bar`` or ``_dot``, so the
adjoint and tangent names made from it cannot collide either.
"""

import itertools

from adsrc.frontend.intrinsics import ELEMENTARY

#: The names a generated module binds at its top for its code, and the words Cython reserves:
#: a kernel's parameter or local of one of these names would shadow them in the generated code
#: (``np = x[i]`` before ``np.empty(...)``), or not compile.  The Python backend's modules import
#: NumPy and ``math``; the Cython backend's cimport the C library's functions and types and the
#: tape (``adsrc.backends.cython.PRELUDE``, ``adsrc.runtime.compiled_tape.NAMES``) and declare
#: indices ``Py_ssize_t``; Cython takes ``complex`` for its C type.  The generated functions call
#: the builtins of :data:`BUILTINS_OF_GENERATED_CODE` where the kernel need not (a whole-array
#: statement is a ``for`` over ``range``, ``np.maximum`` is spelled with ``max``).
BUILTINS_OF_GENERATED_CODE = ("range", "reversed", "len", "abs", "max", "min", "pow", "int",
                              "float", "AssertionError")
TAKEN_BY_GENERATED_CODE = frozenset((
    "np", "math", *ELEMENTARY, "fabs", "floor", "ceil", "fmod", "copysign", "int32_t", "int64_t",
    "malloc", "realloc", "calloc", "free", "memcpy", "Py_ssize_t",
    "Tape", "TapeData", "push_float", "pop_float", "push_int", "pop_int", "push_block",
    "drop_block",
    "include", "ctypedef", "cdef", "cpdef", "cimport", "DEF", "IF", "ELIF", "ELSE", "NULL",
    "sizeof", "complex", *BUILTINS_OF_GENERATED_CODE))

#: Generated functions of a called kernel are named ``<kernel>__fwd``, ``<kernel>__rev``,
#: ``<kernel>__tan_c``...: a kernel's name holding this could be one of them.
GENERATED_FUNCTION_SEPARATOR = "__"


class Namer:
    def __init__(self):
        self._counters = {}

    def fresh(self, prefix):
        counter = self._counters.setdefault(prefix, itertools.count())
        return f"_{prefix}{next(counter)}"


def variant(name, taken):
    """``name_2``, ``name_3``, ...: the first not in ``taken``."""
    return next(f"{name}_{k}" for k in itertools.count(2) if f"{name}_{k}" not in taken)


def free(name, taken):
    """``name`` itself if it is not in ``taken``, else its first :func:`variant` that is not."""
    return name if name not in taken else variant(name, taken)
