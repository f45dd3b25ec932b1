"""Partial derivatives of scalar expressions: the chain rule over one statement's right-hand side.

``partials(expr, is_active)`` returns, for every occurrence of an active leaf (a name or an array
element), the expression of d expr / d leaf, written with the primal values the statement saw,
and the guard under which the statement reads the leaf.  The reverse transformation turns each
into ``leaf_bar += g * partial`` (inside ``if guard:``); the to-be-recorded analysis reads the
same partials and guards to learn which values the reverse sweep needs.

A guard comes from a branch of ``a if c else b``: Python reads only the chosen branch, so
``x[i + 1] if i < n - 1 else 0.0`` is how a kernel keeps a boundary read inside the array.  A
multiplier ``(1.0 if c else 0.0)`` would give the right number but still index ``x_bar[i + 1]``
(or, in tangent mode, read ``x_dot[i + 1]``) past the end: an IndexError in Python, memory
outside the array in compiled code.

Where a derivative is cheaper to state with the statement's own result (``y = u / v``,
``y = exp(u)``, ``y = sqrt(u)``, ``y = tanh(u)``) and that operation is the whole right-hand side,
the partial is written with ``result`` (the new value of the target), so that the reverse sweep
needs ``y`` instead of ``u``: this is what lets Gauss-Seidel's ``x[i] = acc / diag`` avoid
recording ``acc``.
"""

import copy
import math
from typing import NamedTuple

import gast

from adsrc.frontend.intrinsics import ROUNDING_CALLS
from adsrc.frontend.quoting import const, quote_expr

ONE = None  # the multiplier 1, kept symbolic so that no '1.0 *' is generated


def _is_minus_one(node):
    return isinstance(node, gast.UnaryOp) and isinstance(node.op, gast.USub) \
        and isinstance(node.operand, gast.Constant) and node.operand.value == 1.0


def _mul(a, b):
    if a is ONE:
        return b
    if b is ONE:
        return a
    if _is_minus_one(a):
        return _neg(b)
    return gast.BinOp(a, gast.Mult(), b)


def _neg(a):
    """``-a``; minus minus cancels, and ``-1`` stays visible as a negation (so the reverse
    sweep writes ``x_bar -= ...``)."""
    if a is ONE:
        return gast.UnaryOp(gast.USub(), const(1.0))
    if isinstance(a, gast.UnaryOp) and isinstance(a.op, gast.USub):
        return ONE if _is_minus_one(a) else a.operand
    return gast.UnaryOp(gast.USub(), a)


def _inverse(v):
    """``1.0 / v``.  The partials of a quotient are written with this one inverse (``m / v``
    as ``m * (1.0 / v)``, ``u / v**2`` as ``u * (1.0 / v) * (1.0 / v)``) so that the C
    compiler computes it once: a division costs several multiplications, and without
    -ffast-math the compiler may not rewrite one into the other itself."""
    return quote_expr("1.0 / V", V=v)


def _select(test, a, b):
    """``a if test else b`` with a multiplier that may be ONE."""
    return gast.IfExp(test, const(1.0) if a is ONE else a, const(1.0) if b is ONE else b)


def _callee(node):
    return gast.unparse(node.func).strip()


# calls whose value is an integer, so has no derivative (int(), np.floor and np.ceil are
# piecewise constant)
_INTEGER_VALUED = ("len", "int") + ROUNDING_CALLS


class Partial(NamedTuple):
    """d expr / d ``leaf`` is ``partial`` (None for 1), where ``guard`` holds (None: always)."""
    leaf: gast.expr
    partial: gast.expr
    guard: gast.expr


def _both(guard, test):
    """``guard and test``, for a branch inside a branch."""
    test = copy.deepcopy(test)
    return test if guard is None else gast.BoolOp(gast.And(), [copy.deepcopy(guard), test])


class _Partials:
    def __init__(self, is_active, fail):
        self.is_active = is_active
        self.fail = fail
        self.found = []
        self.guard = None

    def has_active(self, node):
        if isinstance(node, gast.Subscript) and isinstance(node.value, gast.Attribute):
            return False        # an extent, u.shape[0]: an integer
        if isinstance(node, (gast.Name, gast.Subscript)):
            return self.is_active(node)
        if isinstance(node, gast.Attribute):
            return False
        if isinstance(node, gast.Call) and _callee(node) in _INTEGER_VALUED:
            return False        # len(x) of an active x; int(u), np.floor(u): piecewise constant
        if isinstance(node, gast.BinOp) and isinstance(node.op, gast.FloorDiv):
            return False        # u // v: piecewise constant
        return any(self.has_active(child) for child in gast.iter_child_nodes(node)
                   if isinstance(child, gast.expr))

    def visit(self, node, m):
        if not self.has_active(node):
            return
        if isinstance(node, (gast.Name, gast.Subscript)):
            self.found.append(Partial(node, m, self.guard))
            return
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            self.fail(node, f"no derivative rule for '{gast.unparse(node).strip()}'")
        method(node, m)

    def _BinOp(self, node, m):
        left, right, op = node.left, node.right, node.op
        if isinstance(op, gast.Add):
            self.visit(left, m)
            self.visit(right, m)
        elif isinstance(op, gast.Sub):
            self.visit(left, m)
            self.visit(right, _neg(m))
        elif isinstance(op, gast.Mult):
            self.visit(left, _mul(m, right))
            self.visit(right, _mul(m, left))
        elif isinstance(op, gast.Div):
            self.visit(left, _mul(m, _inverse(right)))
            self.visit(right, _mul(_neg(m), quote_expr("U * I * I", U=left,
                                                       I=_inverse(right))))
        elif isinstance(op, gast.Pow):
            self._power(node, left, right, m)
        elif isinstance(op, gast.Mod):
            # u % v = u - v * (u // v), where u // v is piecewise constant
            self.visit(left, m)
            self.visit(right, _mul(_neg(m), quote_expr("U // V", U=left, V=right)))
        else:
            self.fail(node, f"no derivative rule for '{gast.unparse(node).strip()}'")

    def _power(self, node, base, exponent, m):
        if isinstance(exponent, gast.Constant):
            value = exponent.value
            if value == 0:
                return          # U ** 0 is 1 everywhere (0 * U ** -1 would be NaN at U = 0)
            if value == 1:
                self.visit(base, m)
            elif value == 2:
                self.visit(base, _mul(m, quote_expr("2.0 * U", U=base)))
            else:
                self.visit(base, _mul(m, quote_expr("C * U ** D", C=const(float(value)), U=base,
                                                    D=const(value - 1))))
            return
        # an exponent 0 at run time: U ** 0 is 1 everywhere, its derivative 0 (not 0 * inf)
        self.visit(base, _mul(m, quote_expr("(0.0 if E == 0.0 else E * U ** (E - 1))", U=base,
                                            E=exponent)))
        # at a zero base the power is 0 whatever the exponent near E > 0: so is its derivative
        # (U ** E * log(U) is 0 * -inf there, NaN in C and an error in Python).  At a negative
        # base the power has no real value for the exponents around E: NaN, as C's log gives
        # (Python's math.log raised, where the power itself had a value, (-2.0) ** 2.0)
        self.visit(exponent, _mul(m, quote_expr(
            "(0.0 if U == 0.0 else U ** E * math.log(U) if U > 0.0 else NAN)", U=base,
            E=exponent, NAN=const(math.nan))))

    def _UnaryOp(self, node, m):
        if isinstance(node.op, gast.USub):
            self.visit(node.operand, _neg(m))
        elif isinstance(node.op, gast.UAdd):
            self.visit(node.operand, m)
        else:
            self.fail(node, "no derivative rule for a logical operator")

    def _Compare(self, node, m):
        """A comparison is 0 or 1 (``(x > 1.0) * x``): piecewise constant, no derivative."""

    def _IfExp(self, node, m):
        outer = self.guard
        self.guard = _both(outer, node.test)
        self.visit(node.body, m)
        self.guard = _both(outer, gast.UnaryOp(gast.Not(), node.test))
        self.visit(node.orelse, m)
        self.guard = outer

    def _Call(self, node, m):
        func = _callee(node)
        args = node.args
        if func in ("min", "max"):
            if len(args) != 2:
                self.fail(node, f"{func}() is differentiated for two arguments")
            # the argument taken, as Python takes it: b when it is below (above) a, else a,
            # also when one is NaN (a comparison with NaN is false)
            a, b = args
            takes_b = quote_expr("B < A" if func == "min" else "B > A", A=a, B=b)
            self.visit(a, _select(takes_b, const(0.0), m))
            self.visit(b, _select(takes_b, m, const(0.0)))
            return
        if func == "pow":
            self._power(node, args[0], args[1], m)
            return
        if func == "float":
            self.visit(args[0], m)
            return
        if func == "math.hypot":
            # a / hypot(a, b) and b / hypot(a, b); at (0, 0) NaN, as sqrt(a*a + b*b) gives
            for arg in args:
                self.visit(arg, _mul(m, quote_expr("A / math.hypot(U, V)", A=arg, U=args[0],
                                                   V=args[1])))
            return
        if len(args) != 1:
            self.fail(node, f"{func} takes one argument")
        u = args[0]
        rules = {
            "math.sqrt": "0.5 / math.sqrt(U)",
            "math.exp": "math.exp(U)",
            "math.log": "1.0 / U",
            "math.sin": "math.cos(U)",
            "math.cos": "-math.sin(U)",
            "math.tan": "1.0 / math.cos(U) ** 2",
            "math.tanh": "1.0 - math.tanh(U) ** 2",
            "math.sinh": "math.cosh(U)",
            "math.cosh": "math.sinh(U)",
            "math.atan": "1.0 / (1.0 + U * U)",
            "math.log1p": "1.0 / (1.0 + U)",
            "math.expm1": "math.exp(U)",
            "abs": "(1.0 if U >= 0.0 else -1.0 if U < 0.0 else U)",     # NaN at a NaN
        }
        if func not in rules:
            self.fail(node, f"no derivative rule for {func}()")
        self.visit(u, _mul(m, quote_expr(rules[func], U=u)))


_RESULT_RULES = {
    "math.exp": "R",
    "math.sqrt": "0.5 / R",
    "math.tanh": "1.0 - R * R",
}


def uses_result(expr, is_active, fail):
    """Whether the derivative of ``target = expr`` is best written with the new target value."""
    probe = _Partials(is_active, fail)
    if isinstance(expr, gast.BinOp) and isinstance(expr.op, gast.Div):
        return probe.has_active(expr.right)
    if isinstance(expr, gast.Call) and _callee(expr) in _RESULT_RULES:
        return probe.has_active(expr)
    return False


def partials(expr, is_active, fail, result=None):
    """A :class:`Partial` for each active leaf of ``expr``.

    ``result`` is the expression holding the statement's result when :func:`uses_result` said
    so; ``fail(node, message)`` raises a located error.
    """
    walker = _Partials(is_active, fail)
    if result is not None and isinstance(expr, gast.BinOp) and isinstance(expr.op, gast.Div):
        walker.visit(expr.left, _inverse(expr.right))
        walker.visit(expr.right, quote_expr("-R * I", R=result, I=_inverse(expr.right)))
    elif result is not None:
        walker.visit(expr.args[0], quote_expr(_RESULT_RULES[_callee(expr)], R=result))
    else:
        walker.visit(expr, ONE)
    return walker.found
