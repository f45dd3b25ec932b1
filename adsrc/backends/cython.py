"""The Cython backend: the same generated trees, printed as typed Cython.

For every specialisation it prints ``cdef`` functions (``<name>__primal_c``, ``<name>__fwd_c``,
``<name>__rev_c``) with typed memoryviews, C scalars and C loops, and, for the entry kernel,
Python-callable wrappers with the names the Python backend uses (``<name>__primal``,
``<name>__fwd``, ``<name>__rev``).  The tape (typed C stacks, :mod:`adsrc.runtime.compiled_tape`)
is cimported from a module adsrc builds once, or, in a module to be built without adsrc
(offline generation), written into the module's own source.  No NumPy headers are needed.

Loops that touch no Python object run inside ``with nogil:``.  ``//`` and ``%`` keep Python's
floor semantics, of integers and of floats (``cdivision`` is on for speed, so they go through
small helpers), and an index that may be negative at run time counts from the end
(``wraparound`` is off for speed, so ``_wrap`` adds the length to the indices
:mod:`adsrc.analyses.index_bounds` cannot show non-negative).
"""

import copy
import os
import re

import gast

from adsrc.analyses.index_bounds import IndexBounds
from adsrc.analyses.types import BOOL, FLOAT, INT, OBJECT, expression_type
from adsrc.backends.python import rules_import
from adsrc.frontend.intrinsics import ELEMENTARY, ROUNDINGS
from adsrc.frontend.quoting import COMMENT_MARK, is_comment, unparse
from adsrc.rules.library import RULES
from adsrc.runtime import compiled_tape
from adsrc.transformations.reverse import SEED, TAPE, tape_call
from adsrc.transformations.vector import COUNT

BOUNDSCHECK_VARIABLE = "ADSRC_BOUNDSCHECK"


def directives():
    """The Cython directives of a generated module.  Compiled code checks no index, for speed:
    an index past the end of an array (a wrong index array, say) reads or writes outside it.
    With ``$ADSRC_BOUNDSCHECK=1`` every index is checked, and one outside the array raises
    IndexError: a kernel whose index arrays may be wrong is debugged at C speed, not the Python
    backend's.  Part of the source, so of every cache key: the two builds never mix."""
    checked = os.environ.get(BOUNDSCHECK_VARIABLE, "") not in ("", "0")
    return (f"language_level=3, boundscheck={checked}, wraparound=False, "
            "initializedcheck=False, cdivision=True, cpow=True")


# math.<name> and np.floor, np.ceil are the C library's <name>
_ELEMENTARY = {**{f"math.{name}": name for name in ELEMENTARY},
               **{f"np.{name}": name for name in ROUNDINGS}}

CALLEE_OUT = "_callee_out"     # where a called kernel's reverse sweep leaves scalar adjoints
BLOCKS = "_blocks"      # a reverse function's view of the tape's array copies
_DOUBLE_TEMPS = re.compile(r"^(_g|_r|_s\d+|_unused\d+)$")
_OBJECT_TEMPS = re.compile(r"^_o\d+$")       # what a derivative rule returns
_INDEX_TEMPS = re.compile(r"^(_bound\d+|_trips\d+|_w\d+|_c\d+|_keep\d+|_saved\d+)$")

PRELUDE = f'''
from libc.math cimport {", ".join(ELEMENTARY)}, fabs, floor, ceil, fmod, copysign
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy

import numpy as np


'''

# Small C helpers, each written into a module only if its code calls it: every function in a
# .pyx costs Cython and the C compiler time, used or not.
_HELPERS = {
    "_range_count": '''
cdef inline Py_ssize_t _range_count(Py_ssize_t start, Py_ssize_t stop,
                                    Py_ssize_t step) noexcept nogil:
    """len(range(start, stop, step))."""
    if step > 0 and stop > start:
        return (stop - start + step - 1) // step
    if step < 0 and stop < start:
        return (start - stop - step - 1) // (-step)
    return 0
''',
    "_abs_int": '''
cdef inline Py_ssize_t _abs_int(Py_ssize_t a) noexcept nogil:
    return -a if a < 0 else a
''',
    "_floordiv": '''
cdef inline Py_ssize_t _floordiv(Py_ssize_t a, Py_ssize_t b) except? -1 nogil:
    """a // b of ints as Python computes it; ZeroDivisionError for b = 0 (C's division by
    zero stops the process)."""
    cdef Py_ssize_t q
    if b == 0:
        with gil:
            raise ZeroDivisionError("integer division or modulo by zero")
    q = a // b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q
''',
    "_to_int": '''
cdef inline Py_ssize_t _to_int(double x) except? -1 nogil:
    """int(x) of a float, as Python computes it where a C integer holds it: ValueError for NaN
    and OverflowError outside the 64-bit range, where C's conversion is undefined (it gave
    -2**63, an index far outside any array)."""
    if x != x:
        with gil:
            raise ValueError("cannot convert float NaN to integer")
    if not -9223372036854775808.0 <= x < 9223372036854775808.0:
        with gil:
            raise OverflowError(f"int({x}): compiled code holds integers in 64 bits")
    return <Py_ssize_t>x
''',
    "_mod": '''
cdef inline Py_ssize_t _mod(Py_ssize_t a, Py_ssize_t b) except? -1 nogil:
    """a % b of ints as Python computes it; ZeroDivisionError for b = 0."""
    cdef Py_ssize_t r
    if b == 0:
        with gil:
            raise ZeroDivisionError("integer division or modulo by zero")
    r = a % b
    if r != 0 and ((r < 0) != (b < 0)):
        r += b
    return r
''',
    "_floordiv_float": '''
cdef inline double _floordiv_float(double a, double b) noexcept nogil:
    """a // b of floats as Python computes it: the quotient less C's fmod remainder, floored
    (floor(a / b) can round up to the next integer), the sign of a zero kept; NaN for b = 0."""
    cdef double remainder = fmod(a, b)
    cdef double quotient = (a - remainder) / b
    cdef double floored
    if remainder != 0.0 and ((b < 0.0) != (remainder < 0.0)):
        quotient -= 1.0
    if quotient == 0.0:
        return copysign(0.0, a / b)
    floored = floor(quotient)
    if quotient - floored > 0.5:
        floored += 1.0
    return floored
''',
    "_mod_float": '''
cdef inline double _mod_float(double a, double b) noexcept nogil:
    """a % b of floats as Python computes it: the sign of b, where C's fmod has a's; NaN for
    b = 0."""
    cdef double remainder = fmod(a, b)
    if remainder == 0.0:
        return copysign(0.0, b)
    if (b < 0.0) != (remainder < 0.0):
        remainder += b
    return remainder
''',
    "_wrap": '''
cdef inline Py_ssize_t _wrap(Py_ssize_t index, Py_ssize_t length) noexcept nogil:
    """A negative index counts from the end, as in Python (wraparound is off)."""
    return index + length if index < 0 else index
''',
    "_failed_assertion": '''
cdef inline int _failed_assertion(const char* message) except -1 nogil:
    with gil:
        raise AssertionError(message.decode("utf-8"))
''',
}


def _c_scalar(kind):
    if kind == OBJECT:
        return "object"
    return "double" if kind.is_float else "Py_ssize_t"


def _c_array(kind, const=False):
    element = {"float64": "double", "int32": "int32_t", "int64": "int64_t"}[kind.dtype]
    dims = ", ".join([":"] * (kind.ndim - 1) + ["::1"])
    return f"{'const ' if const else ''}{element}[{dims}]"


def _c_type(kind, const=False):
    return _c_array(kind, const) if kind.is_array else _c_scalar(kind)


class _Expressions(gast.NodeTransformer):
    """Rewrites an expression into Cython spelling (before it is unparsed)."""

    def __init__(self, types, bounds=None):
        self.types = types
        self.bounds = bounds        # IndexBounds: indices that may be negative are wrapped

    def visit_Subscript(self, node):
        wrapped = self._may_be_negative(node)
        self.generic_visit(node)
        if not any(wrapped):
            return node
        indices = node.slice.elts if isinstance(node.slice, gast.Tuple) else [node.slice]
        indices = [gast.Call(gast.Name("_wrap", gast.Load(), None, None),
                             [index, _extent(node.value.id, dimension)], [])
                   if wrap else index
                   for dimension, (index, wrap) in enumerate(zip(indices, wrapped))]
        node.slice = gast.Tuple(indices, gast.Load()) if len(indices) > 1 else indices[0]
        return node

    def _may_be_negative(self, node):
        """Per index of an array element ``node``: whether it may be negative at run time
        (read before the index is respelled)."""
        if self.bounds is None or not isinstance(node.value, gast.Name):
            return []
        kind = self.types.get(node.value.id)
        if kind is None or not kind.is_array:
            return []
        indices = node.slice.elts if isinstance(node.slice, gast.Tuple) else [node.slice]
        return [not isinstance(index, gast.Slice) and self.bounds.may_be_negative(index)
                for index in indices]

    def visit_Call(self, node):
        # abs of an int as an int (Cython's builtin abs of a C integer needs Python objects);
        # a comparison given to abs, min or max as an int (0 or 1), as Python's bool is one.
        # Typed before the arguments are respelled (np.floor as floor), which loses their types
        integer_abs = unparse(node.func) == "abs" and node.args \
            and expression_type(node.args[0], self.types) in (INT, BOOL)
        int_of_float = unparse(node.func) == "int" and node.args \
            and expression_type(node.args[0], self.types) == FLOAT
        if unparse(node.func) in ("abs", "min", "max"):
            node.args = [_as_int(arg) if expression_type(arg, self.types) == BOOL else arg
                         for arg in node.args]
        self.generic_visit(node)
        func = unparse(node.func)
        if func in _ELEMENTARY:
            node.func = gast.Name(_ELEMENTARY[func], gast.Load(), None, None)
        elif func == "len":
            return gast.Subscript(gast.Attribute(node.args[0], "shape", gast.Load()),
                                  gast.Constant(0, None), gast.Load())
        elif integer_abs:
            node.func = gast.Name("_abs_int", gast.Load(), None, None)
        elif int_of_float:
            node.func = gast.Name("_to_int", gast.Load(), None, None)
        elif func in ("float", "int"):
            node.func = gast.Name(f"__cast_{'double' if func == 'float' else 'Py_ssize_t'}",
                                  gast.Load(), None, None)
        elif func == "pow":
            return gast.BinOp(node.args[0], gast.Pow(), node.args[1])
        elif func in ("np.zeros", "np.empty") and isinstance(node.args[0], gast.Attribute):
            array = node.args[0].value                      # np.empty(u.shape)
            dims = [gast.Subscript(gast.Attribute(copy.deepcopy(array), "shape", gast.Load()),
                                   gast.Constant(d, None), gast.Load())
                    for d in range(self.types[array.id].ndim)]
            node.args = [gast.Tuple(dims, gast.Load())]
        return node

    def visit_Constant(self, node):
        """An int constant beyond 32 bits with C's suffix: Cython takes a plain one for a Python
        object, which code without the GIL cannot use (``10 ** 10 * i``)."""
        if type(node.value) is int and not -2 ** 31 <= node.value < 2 ** 31 \
                and -2 ** 63 <= node.value < 2 ** 63:
            return gast.Name(f"{node.value}LL", gast.Load(), None, None)
        return node

    def visit_UnaryOp(self, node):
        """``-(-e)`` as ``e``: unparsed, it would read ``--e``, which Cython refuses as a
        decrement."""
        self.generic_visit(node)
        if isinstance(node.op, gast.USub) and isinstance(node.operand, gast.UnaryOp) \
                and isinstance(node.operand.op, gast.USub):
            return node.operand.operand
        return node

    def visit_BinOp(self, node):
        """``//`` and ``%`` with Python's floor semantics (``cdivision`` gives C's): helpers for
        integers and for floats, told apart by the operands' types (read before the operands
        are respelled).  ``/`` and ``**`` of integers with a float result (``1 / 3``,
        ``i ** -2``, as typing says) in doubles: C would divide and raise integers."""
        floor_operation = isinstance(node.op, (gast.FloorDiv, gast.Mod))
        kinds = set()
        if floor_operation or isinstance(node.op, (gast.Div, gast.Pow)):
            kinds = {expression_type(operand, self.types) for operand in (node.left, node.right)}
            if None in kinds and floor_operation:
                raise AssertionError("adsrc internal error: no type for an operand of "
                                     f"'{unparse(node)}'")
        # (an operand of no known type, such as a call of an elementary function, is a float)
        in_doubles = not floor_operation and kinds and kinds <= {INT, BOOL} \
            and expression_type(node, self.types) == FLOAT
        if isinstance(node.op, gast.Pow) and all(
                isinstance(operand, gast.Constant) and type(operand.value) is int
                for operand in (node.left, node.right)) and 0 <= node.right.value < 64 \
                and abs(node.left.value ** node.right.value) < 2 ** 63:
            # 10 ** 10 as the int it is (then spelled as a C literal, visit_Constant)
            return self.visit(gast.copy_location(
                gast.Constant(node.left.value ** node.right.value, None), node))
        self.generic_visit(node)
        if in_doubles:
            node.left = gast.Call(gast.Name("__cast_double", gast.Load(), None, None),
                                  [node.left], [])
        if floor_operation:
            helper = "_floordiv" if isinstance(node.op, gast.FloorDiv) else "_mod"
            if FLOAT in kinds:
                helper += "_float"
            return gast.Call(gast.Name(helper, gast.Load(), None, None),
                             [node.left, node.right], [])
        return node


def _as_int(node):
    return gast.Call(gast.Name("__cast_Py_ssize_t", gast.Load(), None, None), [node], [])


def _extent(array, dimension):
    return gast.Subscript(gast.Attribute(gast.Name(array, gast.Load(), None, None), "shape",
                                         gast.Load()), gast.Constant(dimension, None), gast.Load())


def _expression(node, types, bounds=None):
    text = unparse(_Expressions(types, bounds).visit(copy.deepcopy(node)))
    return _casts(text)


def _casts(text):
    """``__cast_double(e)`` as ``(<double>(e))``: Cython's cast binds looser than ``**``
    (``<double>(i) ** -2`` is ``<double>(i ** -2)``), so the cast is bracketed whole."""
    out, start = [], 0
    for match in re.finditer(r"__cast_(double|Py_ssize_t)\(", text):
        if match.start() < start:
            continue                            # inside a cast already rewritten
        depth, end = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        out += [text[start:match.start()], f"(<{match.group(1)}>(",
                _casts(text[match.end():end - 1]), "))"]
        start = end
    return "".join(out + [text[start:]])


# Vector mode's tangent scalars (``adsrc_directions`` of a function, k values each) are C memory
# rather than memoryviews: a memoryview's data may alias any array of the kernel, so the C compiler
# reloads every tangent scalar after every store to a tangent array, while memory from calloc is
# known to alias nothing (with the merged loops over the directions of
# adsrc.transformations.vector, -28% on a vector sweep of benchmarks/hvp.py's membrane energy).
# A function frees the tangent scalars it allocates in a ``finally``.
DIRECTIONS_PRELUDE = '''
from libc.stdlib cimport calloc


cdef double* _new_directions(Py_ssize_t k) except NULL:
    """k zeros, one per direction: the tangent of a scalar in vector mode."""
    cdef double* values = <double*>calloc(max(k, 1), sizeof(double))
    if values == NULL:
        raise MemoryError()
    return values
'''


def _directions(function):
    return getattr(function, "adsrc_directions", frozenset())


def _python_only(stmt, user_names):
    """Whether a statement needs the GIL: allocations, calls of kernels, frames."""
    for node in gast.walk(stmt):
        if isinstance(node, gast.Call):
            func = unparse(node.func)
            if func.startswith(("np.", RULES + ".")) or func in user_names \
                    or func.endswith("_frame"):
                return True
    return False


class _Printer:
    """Prints one function body as Cython text."""

    def __init__(self, types, user_names, renames, scalar_returns=None, directions=frozenset(),
                 top=1, bounds=None):
        self.types = types                  # name -> adsrc Type, for every variable used
        self.bounds = bounds                # IndexBounds of the specialisation
        self.user_names = user_names        # names of called generated functions
        self.renames = renames              # generated Python-level name -> cdef name
        self.scalar_returns = scalar_returns
        self.directions = directions        # tangent scalars of vector mode (double*)
        self.top = top                      # the depth of the function's own statements
        self.lines = []
        self.counter = 0
        self.callee_out = 0

    def emit(self, depth, text):
        self.lines.append("    " * depth + text)

    def expr(self, node):
        node = copy.deepcopy(node)
        for sub in gast.walk(node):
            if isinstance(sub, gast.Call) and isinstance(sub.func, gast.Name) \
                    and sub.func.id in self.renames:
                sub.func.id = self.renames[sub.func.id]
        return _expression(node, self.types, self.bounds)

    def block(self, stmts, depth, nogil_ok=True):
        if not stmts:
            self.emit(depth, "pass")
        for stmt in stmts:
            self.statement(stmt, depth, nogil_ok)

    def fresh(self):
        self.counter += 1
        name = f"_c{self.counter}"
        self.types[name] = INT
        return name

    def statement(self, stmt, depth, nogil_ok):
        if is_comment(stmt):
            self.emit(depth, "# " + stmt.value.value[len(COMMENT_MARK):])
            return
        compound = isinstance(stmt, (gast.For, gast.While, gast.If))
        if compound and nogil_ok and depth == self.top \
                and not _python_only(stmt, self.user_names):
            self.emit(depth, "with nogil:")
            self._statement(stmt, depth + 1)
            return
        self._statement(stmt, depth)

    def _statement(self, stmt, depth):
        method = getattr(self, "_" + type(stmt).__name__)
        method(stmt, depth)

    def _Expr(self, stmt, depth):
        value = stmt.value
        if tape_call(value, "push_float") or tape_call(value, "push_int"):
            self.emit(depth, f"{value.func.attr}(_tp, {self.expr(value.args[0])})")
        elif tape_call(value, "push_frame"):
            for item in value.args[0].elts:
                kind = self.types[item.id]
                if kind.is_array:
                    self.emit(depth, f"{TAPE}.objects.append({item.id})")
                else:
                    self.emit(depth, f"push_{'float' if kind.is_float else 'int'}"
                                     f"(_tp, {item.id})")
        elif tape_call(value, "pop_int"):
            self.emit(depth, "pop_int(_tp)")
        elif tape_call(value, "drop_block"):
            self.emit(depth, f"drop_block(_tp, {value.args[0].id}.shape[0])")
        else:
            self.emit(depth, self.expr(value))

    def _Assign(self, stmt, depth):
        target, value = stmt.targets[0], stmt.value
        if isinstance(target, gast.Tuple) and tape_call(value, "pop_frame"):
            for item in reversed(target.elts):
                kind = self.types[item.id]
                if kind.is_array:
                    self.emit(depth, f"{item.id} = {TAPE}.objects.pop()")
                else:
                    self.emit(depth, f"{item.id} = pop_{'float' if kind.is_float else 'int'}"
                                     f"(_tp)")
            return
        if isinstance(target, gast.Tuple):          # scalars returned by a callee
            out = [gast.Name(CALLEE_OUT, gast.Load(), None, None)]
            taped = isinstance(value.args[-1], gast.Name) and value.args[-1].id == TAPE
            args = value.args[:-1] + out + value.args[-1:] if taped else value.args + out
            self.emit(depth, self.expr(gast.Call(value.func, args, [])))
            for position, item in enumerate(target.elts):
                # an int the callee returns passes through the doubles exactly (below 2**53)
                cast = "" if self.types[item.id].is_float else "<Py_ssize_t>"
                self.emit(depth, f"{item.id} = {cast}{CALLEE_OUT}[{position}]")
            self.callee_out = max(self.callee_out, len(target.elts))
            return
        if isinstance(target, gast.Name) and target.id in self.directions:
            # np.zeros(_k), or np.copy(V) of a parameter V the function writes
            self.emit(depth, f"{target.id} = _new_directions({COUNT})")
            if unparse(value.func) == "np.copy":
                self.emit(depth, f"memcpy({target.id}, {target.id}_given, "
                                 f"{COUNT} * sizeof(double))")
            return
        if tape_call(value, "push_block"):
            array = value.args[0].id
            self.emit(depth, f"{target.id} = push_block(_tp, &{array}[0], {array}.shape[0])")
            return
        if tape_call(value, "saved"):
            block, index = (self.expr(arg) for arg in value.args)
            self.emit(depth, f"{self.expr(target)} = _tp.blocks[{block} + "
                             f"{_bracketed(value.args[1], index)}]")
            return
        if tape_call(value, "block"):       # the array's name now refers to its copy
            block = self.expr(value.args[0])
            self.emit(depth, f"{target.id} = {BLOCKS}[{block}:{block} + {target.id}.shape[0]]")
            return
        for kind in ("float", "int"):
            if tape_call(value, f"pop_{kind}"):
                self.emit(depth, f"{self.expr(target)} = pop_{kind}(_tp)")
                return
        self.emit(depth, f"{self.expr(target)} = {self.expr(value)}")

    def _AugAssign(self, stmt, depth):
        op = {gast.Add: "+=", gast.Sub: "-=", gast.Mult: "*=", gast.Div: "/="}[type(stmt.op)]
        self.emit(depth, f"{self.expr(stmt.target)} {op} {self.expr(stmt.value)}")

    def _Assert(self, stmt, depth):
        message = stmt.msg.value.encode("utf-8")
        self.emit(depth, f"if not ({self.expr(stmt.test)}):")
        self.emit(depth + 1, f"_failed_assertion({message!r})")

    def _Pass(self, stmt, depth):
        self.emit(depth, "pass")

    def _Break(self, stmt, depth):
        self.emit(depth, "break")

    def _Return(self, stmt, depth):
        if self.scalar_returns is not None and isinstance(stmt.value, gast.Tuple):
            for position, item in enumerate(stmt.value.elts):
                self.emit(depth, f"_scalar_out[{position}] = {self.expr(item)}")
            self.emit(depth, "return 0")
        else:
            self.emit(depth, f"return {self.expr(stmt.value)}" if stmt.value else "return 0")

    def _If(self, stmt, depth):
        test = stmt.test
        if tape_call(test, "pop_int"):
            self.emit(depth, "if pop_int(_tp):")
        else:
            self.emit(depth, f"if {self.expr(test)}:")
        self.block(stmt.body, depth + 1, nogil_ok=False)
        if stmt.orelse:
            self.emit(depth, "else:")
            self.block(stmt.orelse, depth + 1, nogil_ok=False)

    def _While(self, stmt, depth):
        self.emit(depth, f"while {self.expr(stmt.test)}:")
        self.block(stmt.body, depth + 1, nogil_ok=False)

    def _For(self, stmt, depth):
        counter = stmt.target.id
        iterable = stmt.iter
        limit = None
        reverse = isinstance(iterable, gast.Call) and unparse(iterable.func) == "reversed"
        if reverse:
            iterable = iterable.args[0]
            if isinstance(iterable, gast.Subscript):        # reversed(range(...)[:trips])
                limit = iterable.slice.upper
                iterable = iterable.value
        # the bounds go into sums below, the step into a product: in brackets where they
        # would not bind
        args = [_bracketed(arg, self.expr(arg), in_product=position == 2)
                for position, arg in enumerate(iterable.args)]
        if len(args) == 1:
            start, stop, step = "0", args[0], "1"
        else:
            start, stop = args[0], args[1]
            step = args[2] if len(args) == 3 else "1"
        literal_step = re.fullmatch(r"-?\d+", step.replace(" ", "").strip("()")) is not None
        if not reverse and limit is None and literal_step:
            self.emit(depth, f"for {counter} in range({', '.join(args)}):")
            self.block(stmt.body, depth + 1, nogil_ok=False)
            return
        if reverse and limit is None and step.strip() in ("1", "-1"):
            last, before_first = (f"{stop} - 1", f"{start} - 1") if step.strip() == "1" \
                else (f"{stop} + 1", f"{start} + 1")
            direction = "-1" if step.strip() == "1" else "1"
            self.emit(depth, f"for {counter} in range({last}, {before_first}, {direction}):")
            self.block(stmt.body, depth + 1, nogil_ok=False)
            return
        position = self.fresh()
        count = self.fresh()
        self.emit(depth, f"{count} = _range_count({start}, {stop}, {step})")
        if limit is not None:
            self.emit(depth, f"{count} = min({count}, {self.expr(limit)})")
        if reverse:
            self.emit(depth, f"for {position} in range({count} - 1, -1, -1):")
        else:
            self.emit(depth, f"for {position} in range({count}):")
        self.emit(depth + 1, f"{counter} = {start} + {position} * {step}")
        self.block(stmt.body, depth + 1, nogil_ok=False)


def _bracketed(node, text, in_product=False):
    """The text of the expression ``node``, in brackets when it binds looser than a sum (``a
    if c else b``), or, ``in_product``, than a product (``a + b``): so that ``- 1`` or ``*
    step`` next to it applies to it whole."""
    loose = (gast.IfExp, gast.BoolOp, gast.Compare, gast.Lambda, gast.NamedExpr)
    if isinstance(node, loose) or (in_product and isinstance(node, gast.BinOp)
                                   and isinstance(node.op, (gast.Add, gast.Sub))):
        return f"({text})"
    return text


def _declarations(printer_types, params, skip):
    scalars, arrays = {}, []
    for variable, kind in sorted(printer_types.items()):
        if variable in params or variable in skip:
            continue
        if kind.is_array:
            arrays.append(f"cdef {_c_array(kind)} {variable}")
        else:
            scalars.setdefault(_c_scalar(kind), []).append(variable)
    lines = [f"cdef {ctype} {', '.join(names)}" for ctype, names in sorted(scalars.items())]
    return lines + arrays


def _assigned_names(function):
    names = set()
    for node in gast.walk(function):
        if isinstance(node, gast.Name) and isinstance(node.ctx, gast.Store):
            names.add(node.id)
    return names


def _type_of(spec, variable):
    """The type of a kernel variable, of a generated temporary, or of the adjoint (``_bar``)
    or tangent (``_dot``) of either, which has the type of what it differentiates; but an
    adjoint is a float, even of an integer or bool scalar (the seed ``_ret_bar`` of a called
    function returning one, which its caller passes as 0.0; the tangents of the ints the tape
    saves stay ints, pushed as ints)."""
    if variable in spec.env:
        return spec.env[variable]
    if variable.endswith("_bar"):
        kind = _type_of(spec, variable[:-4])
        return FLOAT if kind is not None and kind.kind in ("int", "bool") else kind
    if variable.endswith("_dot"):
        return _type_of(spec, variable[:-4])
    if _DOUBLE_TEMPS.match(variable) or variable == SEED:
        return FLOAT
    if _INDEX_TEMPS.match(variable):
        return INT
    if _OBJECT_TEMPS.match(variable):
        return OBJECT
    return None


def _types_for(spec, function):
    """Types of every variable a generated function assigns or takes (a pass that introduces
    names of its own, such as :mod:`adsrc.transformations.vector`, gives their types in the
    function's ``adsrc_types``)."""
    types = {}
    known = getattr(function, "adsrc_types", {})
    for variable in _assigned_names(function) | {arg.id for arg in function.args.args}:
        if variable == TAPE:
            continue
        kind = known[variable] if variable in known else _type_of(spec, variable)
        if kind is None:
            raise AssertionError(f"adsrc internal error: no C type for '{variable}'")
        types[variable] = kind
    return types


def _index_bounds(spec, functions):
    """The lower bounds of the integers of functions that share their variables (one
    specialisation's sweeps: the reverse sweep pops what the forward sweep pushed)."""
    types = {}
    for function in functions:
        types.update(_types_for(spec, function))
    return IndexBounds(functions, types)


class CythonModule:
    """Collects the specialisations of one entry kernel and prints their module."""

    def __init__(self):
        self.parts = []

    @staticmethod
    def cdef_name(name):
        return name + "_c"

    def add(self, spec, forward, reverse, primal, entry):
        renames = {}
        for function in (forward, reverse, primal):
            for node in gast.walk(function):
                if isinstance(node, gast.Call) and isinstance(node.func, gast.Name) \
                        and node.func.id.endswith(("__fwd", "__rev", "__primal", "__tan",
                                                   "__fwd_dot", "__rev_dot")):
                    renames[node.func.id] = self.cdef_name(node.func.id)
        written = spec.effects.written_anywhere(spec.tree.body)
        bounds = _index_bounds(spec, (forward, reverse, primal))
        self.parts.append(self._function(spec, primal, renames, written, bounds, tape=False))
        self.parts.append(self._function(spec, forward, renames, written, bounds, tape=True))
        self.parts.append(self._function(spec, reverse, renames, written, bounds, tape=True,
                                         scalar_returns=spec.scalar_bar_params))
        if entry:
            self.parts.append(self._wrappers(spec, forward, reverse, primal, written))

    def add_tangent(self, spec, tangent, entry):
        """The tangent function of a specialisation; a Python wrapper for the entry."""
        renames = {}
        for node in gast.walk(tangent):
            if isinstance(node, gast.Call) and isinstance(node.func, gast.Name) \
                    and node.func.id.endswith("__tan"):
                renames[node.func.id] = self.cdef_name(node.func.id)
        written = spec.effects.written_anywhere(spec.tree.body)
        # the direction of an array the kernel does not write is only read: a const
        # memoryview takes a read-only array (the caller's direction, left as passed)
        read_only = {param + "_dot" for param in spec.dot_params
                     if spec.env[param].is_array and param not in written}
        pair = ["value", "tangent"] if spec.returns else None
        self.parts.append(self._function(spec, tangent, renames, written,
                                         _index_bounds(spec, (tangent,)), tape=False,
                                         scalar_returns=pair, read_only=read_only))
        if entry:
            self.parts.append(self._wrappers_for(spec, [(tangent, False, pair)], written,
                                                 read_only))

    def add_second_order(self, spec, forward, reverse, entry):
        """The tangents of a specialisation's forward and reverse sweeps (for Hessian-vector
        products); Python wrappers for the entry."""
        renames = {}
        for function in (forward, reverse):
            for node in gast.walk(function):
                if isinstance(node, gast.Call) and isinstance(node.func, gast.Name) \
                        and node.func.id.endswith(("__fwd_dot", "__rev_dot")):
                    renames[node.func.id] = self.cdef_name(node.func.id)
        written = spec.effects.written_anywhere(spec.tree.body)
        value = ["value", "tangent"] if spec.returns else None
        scalars = [name for param in spec.scalar_bar_params
                   for name in (param + "_bar", param + "_bar_dot")] or None
        bounds = _index_bounds(spec, (forward, reverse))
        self.parts.append(self._function(spec, forward, renames, written, bounds, tape=True,
                                         scalar_returns=value))
        self.parts.append(self._function(spec, reverse, renames, written, bounds, tape=True,
                                         scalar_returns=scalars))
        if entry:
            self.parts.append(self._wrappers_for(
                spec, [(forward, True, value), (reverse, True, scalars)], written))

    def _signature(self, spec, function, written, tape, scalar_returns, wrapper=False,
                   read_only=frozenset()):
        """Types of the function's variables, and its C parameters (of its ``def`` wrapper:
        memoryviews for the tangent scalars, which the ``cdef`` function takes as pointers,
        renamed ``<name>_given`` when it writes a copy).  Arrays are const when they are
        parameters of the kernel it does not write, or named in ``read_only``."""
        types = _types_for(spec, function)
        directions, assigned = _directions(function), _assigned_names(function)
        params = []
        for arg in function.args.args:
            if arg.id == TAPE:
                continue
            kind = types[arg.id]
            if arg.id in directions and not wrapper:
                params.append(f"double* {arg.id}{'_given' if arg.id in assigned else ''}")
                continue
            const = kind.is_array and (arg.id in spec.params and arg.id not in written
                                       or arg.id in read_only)
            params.append(f"{_c_type(kind, const)} {arg.id}")
        if scalar_returns:
            params.append("double* _scalar_out")
        if tape:
            params.append(f"Tape {TAPE}")
        return types, params

    def _function(self, spec, function, renames, written, bounds, tape, scalar_returns=None,
                  read_only=frozenset()):
        types, params = self._signature(spec, function, written, tape, scalar_returns,
                                        read_only=read_only)
        returns_value = spec.returns and function.name.endswith(("__fwd", "__primal"))
        ctype = "double" if returns_value and spec.env[spec.RETURN].is_float else \
            "Py_ssize_t" if returns_value else "int"
        user_names = set(renames)
        directions = _directions(function)
        arguments = {arg.id for arg in function.args.args}
        owned = sorted((directions - arguments) | (directions & _assigned_names(function)))
        top = 2 if owned else 1
        printer = _Printer(types, user_names, renames,
                           scalar_returns=scalar_returns if scalar_returns else None,
                           directions=directions, top=top, bounds=bounds)
        body = function.body
        printer.block(body, top)
        if not body or not isinstance(body[-1], gast.Return):
            printer.emit(top, "return 0")
        lines = printer.lines
        if owned:
            lines = ["    try:"] + lines + ["    finally:"] + [f"        free({v})" for v in owned]
        header = [f"cdef {ctype} {self.cdef_name(function.name)}({', '.join(params)}):"]
        decls = ["    " + line for line in _declarations(printer.types, arguments, directions)]
        decls += [f"    cdef double* {v} = NULL" for v in owned]
        if tape:
            decls.append(f"    cdef TapeData* _tp = &{TAPE}.data")
        if any(tape_call(node, "block") for node in gast.walk(function)):
            # the copies as a memoryview, once (with the GIL): a reverse sweep pushes nothing,
            # so they stay where they are, and slicing this view needs no GIL
            decls.append(f"    cdef double[::1] {BLOCKS} = <double[:_tp.cap_blocks]> _tp.blocks")
        if printer.callee_out:
            decls.append(f"    cdef double {CALLEE_OUT}[{printer.callee_out}]")
        return "\n".join(header + decls + lines)

    def _wrappers(self, spec, forward, reverse, primal, written):
        return self._wrappers_for(spec, [(primal, False, None), (forward, True, None),
                                         (reverse, True, spec.scalar_bar_params)], written)

    def _wrappers_for(self, spec, functions, written, read_only=frozenset()):
        """Python-callable ``def`` wrappers of cdef functions: (function, takes a tape,
        names of the scalars it returns through ``_scalar_out`` or None)."""
        out = []
        for function, tape, scalar in functions:
            _, params = self._signature(spec, function, written, tape, None, wrapper=True,
                                        read_only=read_only)
            args = [f"&{arg.id}[0]" if arg.id in _directions(function) else arg.id
                    for arg in function.args.args if arg.id != TAPE]
            call_args = args + (["_scalar_out"] if scalar else []) + ([TAPE] if tape else [])
            lines = [f"def {function.name}({', '.join(params)}):"]
            if scalar:
                lines.append(f"    cdef double _scalar_out[{len(scalar)}]")
                lines += [f"    _scalar_out[{k}] = 0.0" for k in range(len(scalar))]
                lines.append(f"    {self.cdef_name(function.name)}({', '.join(call_args)})")
                lines.append("    return (" + ", ".join(f"_scalar_out[{k}]"
                                                       for k in range(len(scalar))) + ",)")
            else:
                # the cdef function of a kernel without a return value returns 0 (an ``int``,
                # so that errors propagate): the wrapper returns None, as the kernel does
                call = f"{self.cdef_name(function.name)}({', '.join(call_args)})"
                lines.append(f"    result = {call}" if spec.returns else f"    {call}")
                if function.name.endswith("__fwd"):
                    lines.append(f"    {TAPE}.note_forward_end()")
                lines.append("    return result" if spec.returns else "    return None")
            out.append("\n".join(lines))
        return "\n\n\n".join(out)

    def source(self, header, tape_module=None):
        """The module's text.  ``tape_module``: the module to cimport the tape from; None: the
        tape is written into the module, which then builds and runs without adsrc."""
        body = "\n\n\n".join(self.parts)
        tape = compiled_tape.standalone() if tape_module is None \
            else compiled_tape.cimport(tape_module)
        parts = [f"# cython: {directives()}\n" + '"""' + header + '"""\n' + PRELUDE, tape]
        parts += [text for name, text in _HELPERS.items() if name + "(" in body]
        if "_new_directions(" in body:
            parts.append(DIRECTIONS_PRELUDE)
        parts += [rules_import(body), body]
        return "\n\n\n".join(part.strip("\n") for part in parts if part) + "\n"


def line_map(source, filename):
    """Generated line number -> (user file, user line), from the ``# line N:`` comments."""
    return {number: (filename, line) for number, (line, _) in quoted_lines(source).items()}


def quoted_lines(source):
    """Generated line number -> (user line, the user's statement as quoted), from the ``# line
    N: ...`` comment above it: a comment holds until the next one or the end of its function."""
    mapping, current = {}, None
    for number, text in enumerate(source.splitlines(), start=1):
        match = re.match(r"\s*# line (\d+): (.*)$", text)
        if match:
            current = (int(match.group(1)), match.group(2))
        elif text and not text[0].isspace():
            current = None
        if current:
            mapping[number] = current
    return mapping
