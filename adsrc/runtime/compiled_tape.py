"""The tape of compiled adjoints, in Cython: typed C stacks that grow by ``realloc``, with
inline push and pop functions that a forward and a reverse sweep call without the GIL.

Generated modules reach the same text in one of two ways:

* A module adsrc builds and caches (``adsrc.compiling.cython_build``) cimports it from one
  module built once per cache directory and toolchain, whose ``.pxd`` (:func:`declarations`)
  declares the stacks and holds the inline functions.  Compiled into every module, the ``Tape``
  class and its Python-visible methods lengthened every kernel's C compile.
* A module written to be built without adsrc (``adsrc generate``, the shipped ``kernels/``)
  carries it in its own source (:func:`standalone`).

Python code makes tapes (``Tape(floats, ints, blocks)``) and reads their counts; the stacks
themselves are only touched from generated C.
"""

_CIMPORTS = '''from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy
'''

_STRUCT = '''cdef struct TapeData:
    double* floats
    long long* ints
    double* blocks         # array snapshots, element by element
    Py_ssize_t n_floats, n_ints, cap_floats, cap_ints, n_blocks, cap_blocks
    long long floats_pushed, ints_pushed, peak_values, blocks_pushed
    Py_ssize_t end_floats, end_ints, end_blocks     # each stack's size when the forward ended


'''

_CLASS_HEAD = '''cdef class Tape:
    """The tape of one adjoint call: typed C stacks, plus a list for the arrays a reverse
    sweep reads from its frame and for what derivative rules of library calls save."""
'''

_ATTRIBUTES = '''    cdef TapeData data
    cdef public list objects
'''

_METHODS = '''
    def __cinit__(self, Py_ssize_t floats=0, Py_ssize_t ints=0, Py_ssize_t blocks=0):
        """Stacks of at least ``floats``, ``ints`` and ``blocks`` values (``sizes`` of an
        earlier call's tape): a stack that has to grow copies what it holds, so a tape made
        as large as the last one of a repeated call copies nothing twice."""
        floats, ints, blocks = max(floats, 1024), max(ints, 1024), max(blocks, 1024)
        self.data.floats = <double*>malloc(floats * sizeof(double))
        self.data.ints = <long long*>malloc(ints * sizeof(long long))
        self.data.blocks = <double*>malloc(blocks * sizeof(double))
        if self.data.floats == NULL or self.data.ints == NULL or self.data.blocks == NULL:
            raise MemoryError()
        self.data.cap_floats = floats
        self.data.cap_ints = ints
        self.data.cap_blocks = blocks
        self.data.end_floats = 0
        self.data.end_ints = 0
        self.data.end_blocks = 0
        self.data.n_floats = 0
        self.data.n_ints = 0
        self.data.n_blocks = 0
        self.data.blocks_pushed = 0
        self.data.floats_pushed = 0
        self.data.ints_pushed = 0
        self.data.peak_values = 0
        self.objects = []

    def __dealloc__(self):
        free(self.data.floats)
        free(self.data.ints)
        free(self.data.blocks)

    @property
    def floats_pushed(self):
        return self.data.floats_pushed

    @property
    def ints_pushed(self):
        return self.data.ints_pushed

    @property
    def arrays_copied(self):
        return self.data.blocks_pushed

    @property
    def peak_values(self):
        return self.data.peak_values

    @property
    def sizes(self):
        """(floats, ints, blocks): how many values each stack held when the forward ended."""
        return (self.data.end_floats, self.data.end_ints, self.data.end_blocks)

    def push_object(self, value):
        """Save what a derivative rule's forward part returned (adsrc.runtime.rule_calls)."""
        self.objects.append(value)

    def pop_object(self):
        return self.objects.pop()

    def empty(self):
        """Whether everything pushed has been popped (true after a complete reverse sweep)."""
        return self.data.n_floats == 0 and self.data.n_ints == 0 and self.data.n_blocks == 0 \
            and not self.objects

    def restart(self):
        """Make this emptied tape ready for another call: its stacks keep their memory (see
        ``adsrc.api._Swept.make_tape``), its counts start from zero."""
        self.data.blocks_pushed = 0
        self.data.floats_pushed = 0
        self.data.ints_pushed = 0
        self.data.peak_values = 0

    def note_forward_end(self):
        """Record what the forward sweep pushed.  A forward sweep only pushes, so its end is
        where the tape is largest; counting there keeps the push itself minimal."""
        self.data.floats_pushed = self.data.n_floats + self.data.n_blocks
        self.data.ints_pushed = self.data.n_ints
        self.data.peak_values = self.data.n_floats + self.data.n_ints + self.data.n_blocks
        self.data.end_floats = self.data.n_floats
        self.data.end_ints = self.data.n_ints
        self.data.end_blocks = self.data.n_blocks


'''

_INLINE = '''cdef inline int _grow_failed() except -1 nogil:
    with gil:
        raise MemoryError("adsrc tape: out of memory")


cdef inline int push_float(TapeData* t, double value) except -1 nogil:
    cdef double* grown
    if t.n_floats == t.cap_floats:
        grown = <double*>realloc(t.floats, 2 * t.cap_floats * sizeof(double))
        if grown == NULL:
            return _grow_failed()
        t.floats = grown
        t.cap_floats *= 2
    t.floats[t.n_floats] = value
    t.n_floats += 1
    return 0


cdef inline double pop_float(TapeData* t) noexcept nogil:
    t.n_floats -= 1
    return t.floats[t.n_floats]


cdef inline int push_int(TapeData* t, long long value) except -1 nogil:
    cdef long long* grown
    if t.n_ints == t.cap_ints:
        grown = <long long*>realloc(t.ints, 2 * t.cap_ints * sizeof(long long))
        if grown == NULL:
            return _grow_failed()
        t.ints = grown
        t.cap_ints *= 2
    t.ints[t.n_ints] = value
    t.n_ints += 1
    return 0


cdef inline long long pop_int(TapeData* t) noexcept nogil:
    t.n_ints -= 1
    return t.ints[t.n_ints]


cdef inline Py_ssize_t push_block(TapeData* t, const double* values,
                                  Py_ssize_t n) except -1 nogil:
    """Copy n values; returns where the copy starts."""
    cdef double* grown
    cdef Py_ssize_t start = t.n_blocks
    cdef Py_ssize_t cap = t.cap_blocks
    while t.n_blocks + n > cap:
        cap *= 2
    if cap != t.cap_blocks:
        grown = <double*>realloc(t.blocks, cap * sizeof(double))
        if grown == NULL:
            return _grow_failed()
        t.blocks = grown
        t.cap_blocks = cap
    memcpy(t.blocks + t.n_blocks, values, n * sizeof(double))
    t.n_blocks += n
    t.blocks_pushed += 1
    return start


cdef inline void drop_block(TapeData* t, Py_ssize_t n) noexcept nogil:
    t.n_blocks -= n


'''

# what a generated module uses of the tape
NAMES = ("Tape", "TapeData", "push_float", "pop_float", "push_int", "pop_int", "push_block",
         "drop_block")


def standalone():
    """The tape as part of a module's own source (which cimports ``_CIMPORTS``' names)."""
    return _STRUCT + _CLASS_HEAD + _ATTRIBUTES + _METHODS + _INLINE


def declarations():
    """The ``.pxd`` of the runtime module (adsrc.compiling.cython_build): what a module that
    cimports the tape compiles in."""
    return _CIMPORTS + "\n\n" + _STRUCT + "cdef class Tape:\n" + _ATTRIBUTES + "\n\n" + _INLINE


def implementation():
    """The tape's part of the runtime module's ``.pyx``: the ``Tape`` class's Python-visible
    part."""
    return "# cython: language_level=3\n" + _CIMPORTS + "\n\n" + _CLASS_HEAD + _METHODS


def cimport(module_name):
    """The line with which a generated module takes the tape from the module ``module_name``."""
    return f"from {module_name} cimport {', '.join(NAMES)}\n"
