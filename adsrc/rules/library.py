"""Derivative rules for library calls: functions the transformer calls but never looks inside.

A kernel may call a function that adsrc cannot (or should not) differentiate statement by
statement: a sparse direct solve, a dense factorisation, a user's compiled routine.  A *rule*
says how to differentiate it as a whole::

    @adsrc.rule(my_solve, returns="float64[:]")
    def my_solve_forward(A, b):              # the arguments of my_solve
        x = my_solve(A, b)
        return x, (A, x)                     # the value, and what the backward part needs

    @my_solve_forward.backward
    def _(saved, x_bar):                     # one adjoint per argument (None: no derivative)
        A, x = saved
        lam = my_solve(A.T, x_bar)
        return -np.outer(lam, x), lam

    @my_solve_forward.tangent
    def _(A, b, A_dot, b_dot):               # the value and its tangent
        x = my_solve(A, b)
        return x, my_solve(A, b_dot - A_dot @ x)

Inside a kernel the call is written as usual: ``x = my_solve(A, b)``, ``r = c - my_solve(A, b)``
or ``x[:] = my_solve(A, b)`` for an array result, ``s = norm(v)`` for a float result.  adsrc
keeps one array per name, allocated before it is filled (see :mod:`adsrc.normalize.desugar`), so
a rule whose result is bound to a name or used in an expression declares the result's extents,
``shape=("b.shape[0]",)``: Python expressions of its forward part's parameters (``size[0]`` for
the first of ``*size``), evaluated on the call's arguments.  Without ``shape`` the result can
only fill the whole of an existing array, ``x[:] = my_solve(A, b)``.
The registry maps the library function (by identity) to its rule; the fence rewrites each call
to ``_rules.<rule name>(...)`` and the generated code calls the rule through
:mod:`adsrc.runtime.rule_calls`.  Rules are looked up by name at run time, so a generated module
that calls rules needs adsrc installed.
"""

import ast
import inspect
import re

from adsrc.errors import AdsrcError

RULES = "_rules"        # the generated code's name for adsrc.runtime.rule_calls.RULES
_BY_FUNCTION = {}       # id(function) -> Rule
_BY_NAME = {}           # rule name -> Rule
_SPLITS = {}            # id(function) -> Split


class Rule:
    """The derivative rule of one library function (see the module docstring)."""

    def __init__(self, function, forward, returns, shape=None, takes=None):
        from adsrc.analyses.types import parse_type   # types knows rules' result types
        self.function = function
        self.forward = forward
        self.returns = parse_type(returns)
        # the types of the arguments, as strings (None: any), checked where a call is typed
        self.takes = None if takes is None else tuple(takes)
        for kind in self.takes or ():
            if kind is not None:
                parse_type(kind)
        if self.returns.is_array and self.returns.dtype != "float64":
            raise AdsrcError(f"rule for {spelled(function)}: returns must be 'float' or a "
                             f"float64 array type, got {returns!r}")
        if not self.returns.is_array and not self.returns.is_float:
            raise AdsrcError(f"rule for {spelled(function)}: returns must be 'float' or a "
                             f"float64 array type, got {returns!r}")
        self.shape = _checked_shape(shape, self, returns)
        self.backward_function = None
        self.tangent_function = None
        self.backward_tangent_function = None
        self.name = _unique_name(function)

    def backward(self, function):
        """Decorator: ``backward(saved, result_bar)`` returns one adjoint per argument of the
        library function, in order: an array shaped like an array argument, a float for a float
        argument, or None where there is no derivative (index arrays, integers)."""
        self.backward_function = function
        return function

    def tangent(self, function):
        """Decorator: ``tangent(*args, *arg_dots)`` returns ``(value, value_dot)``.  A float
        argument that carries no tangent gets a zero direction; an integer one gets None."""
        self.tangent_function = function
        return function

    def backward_tangent(self, function):
        """Decorator, optional: ``backward_tangent(args, dots, result_bar, result_bar_dot)``
        returns ``(adjoints, adjoint_tangents)``: the backward part at ``args`` with the seed
        ``result_bar``, and its tangent when the arguments move along ``dots`` (a tuple like
        ``args``; zero for float arguments without tangent, None for integer ones) and the
        seed along ``result_bar_dot``.  Hessian-vector products (``adsrc.hvp``) through the
        rule need it: they differentiate the reverse sweep once more."""
        self.backward_tangent_function = function
        return function

    def __repr__(self):
        return f"<adsrc rule for {spelled(self.function)}>"


def rule(function, *, returns="float64[:]", shape=None, takes=None):
    """Declare the derivative of ``function``: decorates its forward part (see the module
    docstring).  ``returns`` is the type of its result: ``"float"``, ``"float64[:]"`` or
    ``"float64[:,:]"``; ``shape``, for an array result, its extents as expressions of the
    forward part's parameters (one string per dimension), so that the result may be bound to
    a name or used in an expression; ``takes``, optional, the types of the arguments, one per
    argument (None: any), so that a call with others is refused at its line, before anything
    runs."""
    if not callable(function):
        raise AdsrcError(f"adsrc.rule takes the function to differentiate, got {function!r}")

    def declare(forward):
        declared = Rule(function, forward, returns, shape, takes)
        if not forward.__module__.startswith(__package__ + "."):
            _refuse_differentiated_natively(function)
            # the built-in rules load on first use: loaded now, a user's rule for the same
            # function comes after them and wins, as a later rule does
            _load_builtin_rules()
        register(declared)
        return declared

    return declare


def _refuse_differentiated_natively(function):
    """A rule for a function adsrc differentiates itself (np.exp, np.sum) would never be
    used: the fence spells such calls before it looks rules up."""
    from adsrc.frontend.intrinsics import canonical

    if canonical(function) is not None:
        raise AdsrcError(f"adsrc.rule: {spelled(function)} is differentiated by adsrc itself "
                         f"(see the README's list of supported functions); a rule for it would "
                         f"not be used")


def register(declared):
    """Make a rule visible to the transformer; a later rule for the same function wins."""
    old = _BY_FUNCTION.get(id(declared.function))
    if old is not None:
        declared.name = old.name
    _BY_FUNCTION[id(declared.function)] = declared
    _BY_NAME[declared.name] = declared


class Split:
    """A library function returning several arrays (``Q, R = np.linalg.qr(A)``), computed as
    one function per result, each with its own rule (which declares its result's shape).
    ``parts`` holds the functions, in the order of the results."""

    def __init__(self, function, parts):
        self.function = function
        self.parts = parts


def split(function, parts):
    """Declare ``a, b = function(A)`` as ``a = part_0(A)``, ``b = part_1(A)``: ``parts`` is a list
    of the part functions; each needs a rule with a ``shape``."""
    _SPLITS[id(function)] = Split(function, parts)


def split_of(obj):
    """The split of a library function returning several arrays, or None."""
    _load_builtin_rules()
    return _SPLITS.get(id(obj))


def lookup(obj):
    """The rule of a library function, or None."""
    _load_builtin_rules()
    return _BY_FUNCTION.get(id(obj))


def by_name(rule_name):
    """The rule a generated call names."""
    _load_builtin_rules()
    try:
        return _BY_NAME[rule_name]
    except KeyError:
        raise AdsrcError(f"no derivative rule named {rule_name!r} is declared in this process: "
                         "import the module that declares it with adsrc.rule first (a rule is "
                         "named after its function's module and name, as the module was "
                         "imported when the code was generated)") from None


def _load_builtin_rules():
    # imported on first use: the built-in rules import SciPy's linear algebra
    from adsrc.rules import linalg, sparse  # noqa: F401


def _checked_shape(shape, declared, returns):
    """``shape`` as a tuple of expressions (strings), checked against the result's type and the
    forward part's parameters; None if not given."""
    if shape is None:
        return None
    shape = (shape,) if isinstance(shape, str) else shape
    where = f"rule for {spelled(declared.function)}: shape"
    if not declared.returns.is_array:
        raise AdsrcError(f"{where} is for an array result, and it returns {returns!r}")
    if not isinstance(shape, tuple) or not all(isinstance(part, str) for part in shape) \
            or len(shape) != declared.returns.ndim:
        raise AdsrcError(f"{where} must be {declared.returns.ndim} expression(s), as strings, "
                         f"one per dimension of {returns!r}; got {shape!r}")
    named, rest = forward_parameters(declared)
    known = set(named) | {rest, "min", "max"}
    for part in shape:
        try:
            tree = ast.parse(part, mode="eval")
        except SyntaxError:
            raise AdsrcError(f"{where}: {part!r} is not a Python expression") from None
        unknown = sorted({node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
                         - known)
        if unknown:
            raise AdsrcError(f"{where}: {part!r} names {unknown[0]}, which is not a parameter "
                             f"of {declared.forward.__name__} ({', '.join(named)})")
    return shape


def forward_parameters(declared):
    """The names of a rule's forward part's positional parameters, and of its ``*args`` (None
    when it has none): what the expressions of its ``shape`` name."""
    named, rest = [], None
    for parameter in inspect.signature(declared.forward).parameters.values():
        if parameter.kind == parameter.VAR_POSITIONAL:
            rest = parameter.name
        elif parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            named.append(parameter.name)
    return named, rest


def spelled(function):
    """``module.qualname`` of a function, for messages and rule names."""
    module = getattr(function, "__module__", None) or "?"
    return f"{module}.{getattr(function, '__qualname__', getattr(function, '__name__', '?'))}"


def _unique_name(function):
    base = re.sub(r"\W+", "_", spelled(function)).strip("_")
    candidate, counter = base, 1
    while candidate in _BY_NAME and _BY_NAME[candidate].function is not function:
        counter += 1
        candidate = f"{base}_{counter}"
    return candidate
