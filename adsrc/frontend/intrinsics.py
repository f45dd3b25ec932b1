"""The library functions a kernel may call, resolved by identity to one canonical spelling.

Kernels write ``np.sqrt``, ``math.sqrt`` or ``from math import sqrt``; the rest of adsrc sees one
canonical name per function (``math.sqrt``, ``min``, ``np.zeros``...) so that the analyses and the
derivative rules recognise a function by name, never by guessing at aliases.
"""

import builtins
import math

import gast
import numpy as np

#: scalar elementary functions, canonical spelling ``math.<name>`` (the C library's names too).
ELEMENTARY = ("sqrt", "exp", "log", "sin", "cos", "tan", "tanh", "sinh", "cosh", "atan", "log1p",
              "expm1", "hypot")
#: how many arguments those take where it is not one.
ELEMENTARY_ARITY = {"hypot": 2}
#: NumPy's names of those, where they differ.
_NUMPY_NAMES = {"atan": "arctan"}
#: NumPy's float roundings to an integer value, canonical ``np.<name>``: piecewise constant;
#: ``math.floor``/``math.ceil``, which return ints, are written ``int(np.floor(x))``.
ROUNDINGS = ("floor", "ceil")
ROUNDING_CALLS = tuple("np." + name for name in ROUNDINGS)
#: running reductions of a 1-D array, canonical ``np.<name>``.
CUMULATIVE = ("cumsum", "cumprod")
CUMULATIVE_CALLS = tuple("np." + name for name in CUMULATIVE)
#: allocation functions, canonical spelling ``np.<name>``.
ALLOCATIONS = ("zeros", "empty", "zeros_like", "empty_like", "copy")
#: reductions over arrays, canonical spelling ``np.<name>``.
REDUCTIONS = ("dot", "sum", "mean", "max", "min")
REDUCTION_CALLS = tuple("np." + name for name in REDUCTIONS)
#: the reductions that also run along an axis of a 2-D array, ``np.sum(u, 1)``.
AXIS_REDUCTIONS = ("sum", "mean", "max", "min")
#: functions the frontend spells with others (np.where as ``a if c else b``, np.clip as min
#: and max, np.maximum and np.minimum as max and min keeping a NaN, np.square as ``** 2``,
#: np.sign with comparisons, np.remainder, alias np.mod, as ``%`` and np.floor_divide as
#: ``//``) or that lowering reads element by element (np.diag, np.roll, np.diff, np.outer),
#: canonical ``np.<name>``, and their numbers of arguments.
SPELLED_OTHERWISE = {"where": 3, "clip": 3, "square": 1, "sign": 1, "remainder": 2,
                     "floor_divide": 2, "maximum": 2, "minimum": 2, "diag": 1, "roll": 2,
                     "diff": 1, "outer": 2, "isnan": 1, "isinf": 1, "isfinite": 1}
#: the tests of a float's class, canonical ``np.<name>`` (``math.<name>`` too), spelled with
#: comparisons: a truth value, with no derivative to take.
CLASS_TESTS = ("isnan", "isinf", "isfinite")
#: arrays of constants (a fill value may be any scalar), canonical ``np.<name>``: lowering
#: reads them element by element too.
CONSTANT_ARRAYS = ("ones", "ones_like", "full", "full_like", "eye")
#: the functions lowering reads element by element.
READ_BY_ELEMENT = ("np.diag", "np.roll", "np.diff", "np.outer") \
    + tuple("np." + name for name in CONSTANT_ARRAYS)


def _table():
    table = {}
    for name in ELEMENTARY:
        table[id(getattr(math, name))] = ("math", name)
        table[id(getattr(np, _NUMPY_NAMES.get(name, name)))] = ("math", name)
    for obj in (builtins.abs, np.abs, np.absolute, math.fabs):
        table[id(obj)] = ("builtin", "abs")
    table[id(builtins.min)] = ("builtin", "min")
    table[id(builtins.max)] = ("builtin", "max")
    for obj in (np.power, math.pow, builtins.pow):
        table[id(obj)] = ("builtin", "pow")
    for name in ALLOCATIONS + CONSTANT_ARRAYS + REDUCTIONS + tuple(SPELLED_OTHERWISE) \
            + ROUNDINGS + CUMULATIVE:
        table[id(getattr(np, name))] = ("np", name)
    for name in ROUNDINGS:
        table[id(getattr(math, name))] = ("math", name)
    for name in CLASS_TESTS:
        table[id(getattr(math, name))] = ("np", name)
    for name in ("len", "range", "float", "int", "reversed", "zip", "enumerate"):
        table[id(getattr(builtins, name))] = ("builtin", name)
    return table


_CANONICAL = _table()


def canonical(obj):
    """``(namespace, name)`` of a supported library function, or None."""
    return _CANONICAL.get(id(obj))


def spelled(namespace, name):
    """Source spelling of a canonical function: ``math.sqrt``, ``np.zeros``, ``min``."""
    return name if namespace == "builtin" else f"{namespace}.{name}"


def along_axis(node):
    """Whether ``node`` is a reduction along an axis, ``np.sum(u, axis)`` (np.mean, np.max,
    np.min): a 1-D array where the other reductions are floats."""
    return isinstance(node, gast.Call) and len(node.args) == 2 \
        and gast.unparse(node.func).strip() in tuple("np." + name for name in AXIS_REDUCTIONS)


def scaled_matrix(node):
    """The readings of ``node`` as a factor times a matrix, ``s * M``, ``M * s`` or ``M / s`` with
    ``M`` a name or ``M.T``: ``(factor, matrix, factor_first)`` each.  Python reads ``s * M @ v``
    as ``(s * M) @ v``; typing picks the reading whose factor is a scalar and matrix 2-D and
    marks it (``adsrc_factor_first``) for desugaring to write ``s * (M @ v)``."""
    if not (isinstance(node, gast.BinOp) and isinstance(node.op, (gast.Mult, gast.Div))):
        return []

    def named(side):
        return isinstance(side, gast.Name) or (isinstance(side, gast.Attribute)
                                               and side.attr == "T"
                                               and isinstance(side.value, gast.Name))

    readings = []
    if named(node.left):
        readings.append((node.right, node.left, False))
    if isinstance(node.op, gast.Mult) and named(node.right):
        readings.append((node.left, node.right, True))
    return readings


def matrix_vector(node):
    """``(matrix name, transposed, vector)`` of ``M @ v`` or ``M.T @ v`` with ``M`` a name, else
    None: the spelling of a dense matrix-vector product, which typing checks (M 2-D, v 1-D) and
    :mod:`adsrc.normalize.lower_arrays` lowers to loops.  Desugaring turns ``np.dot(M, v)`` into
    this form and every other ``@`` into ``np.dot``."""
    if not (isinstance(node, gast.BinOp) and isinstance(node.op, gast.MatMult)):
        return None
    left, transposed = node.left, False
    if isinstance(left, gast.Attribute) and left.attr == "T":
        left, transposed = left.value, True
    if not isinstance(left, gast.Name):
        return None
    return left, transposed, node.right
