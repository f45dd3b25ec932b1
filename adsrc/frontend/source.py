"""Reading a kernel's source and mapping tree locations back to the user's file.

A :class:`KernelSource` owns the parsed ``gast.FunctionDef`` of one user function together with
what is needed to report errors against the user's file (file name, first line, indentation) and
to resolve the global names the kernel refers to (``np``, ``math``, other kernels).
"""

import __future__
import ast
import dis
import functools
import inspect
import operator
import os
import textwrap
import types

import gast

from adsrc.errors import AdsrcError, UnsupportedError


class KernelSource:
    """The parsed source of one kernel function."""

    def __init__(self, fn):
        if not isinstance(fn, types.FunctionType) or fn.__name__ == "<lambda>":
            raise AdsrcError(f"adsrc differentiates plain Python functions defined with 'def' "
                             f"in a .py file, got {fn!r}")
        if hasattr(fn, "__wrapped__"):      # inspect reads the source of what it wraps
            raise AdsrcError(f"{fn.__qualname__} wraps another function (a decorator's "
                             f"functools.wraps): adsrc would read the source of the function "
                             f"it wraps, not what the wrapper does; differentiate the function "
                             f"itself, without the decorator")
        try:
            lines, first_line = inspect.getsourcelines(fn)
        except (OSError, TypeError) as exc:
            raise AdsrcError(
                f"cannot read the source of {fn.__qualname__}: define kernels in a .py file "
                f"(adsrc transforms source code) ({exc})"
            ) from None
        raw = "".join(lines)
        dedented = textwrap.dedent(raw)
        self.fn = fn
        self.name = fn.__name__
        self.filename = inspect.getsourcefile(fn) or "<unknown>"
        self.first_line = first_line
        self.indent = len(lines[0]) - len(lines[0].lstrip())
        self.lines = dedented.splitlines()
        self.globals = fn.__globals__
        try:
            module = ast.parse(dedented)
        except SyntaxError as exc:
            raise AdsrcError(f"cannot parse the source of {fn.__qualname__}: {exc}") from None
        defs = [node for node in module.body if isinstance(node, ast.FunctionDef)]
        if len(defs) != 1:
            raise AdsrcError(f"{self.name}: expected one function definition in its source")
        self._definition = defs[0]
        _check_is_the_running_code(fn, self._definition, dedented, self.filename, first_line)
        self.params = [arg.arg for arg in self._definition.args.args]

    @functools.cached_property
    def tree(self):
        """The kernel's ``gast.FunctionDef``, without decorators.  Converted from the ``ast``
        tree on first use: the conversion is most of the cost of reading a kernel, which
        ``differentiate`` does to refuse an unreadable one early, and a cache hit never
        needs the tree."""
        tree = gast.ast_to_gast(self._definition)
        tree.decorator_list = []
        return tree

    def location(self, node):
        """(file, line, col) of a tree node in the user's file (1-based line, 0-based col)."""
        line = getattr(node, "lineno", 1) or 1
        col = getattr(node, "col_offset", 0) or 0
        return self.filename, self.first_line + line - 1, col + self.indent

    def place(self, node):
        """``file:line`` of a node, for the messages of the checks run with the kernel: the
        file's name without its directory, which generated files kept in a project must not
        depend on."""
        filename, line, _ = self.location(node)
        return f"{os.path.basename(filename)}:{line}"

    def source_line(self, node):
        """The text of the line a node starts on, as the user wrote it."""
        index = (getattr(node, "lineno", 1) or 1) - 1
        if 0 <= index < len(self.lines):
            return self.lines[index].strip()
        return ""

    def quoted_line(self, node):
        """``line N: <the line>``, which the generated code carries as a comment above the code
        of the statement ``node`` (:func:`adsrc.frontend.quoting.with_quoted_lines`)."""
        return f"line {self.location(node)[1]}: {self.source_line(node)}"

    def error(self, node, message):
        """An :class:`UnsupportedError` located at ``node``."""
        filename, line, col = self.location(node)
        index = (getattr(node, "lineno", 1) or 1) - 1
        text = None
        if 0 <= index < len(self.lines):
            text = " " * self.indent + self.lines[index]
        return UnsupportedError(message, filename, line, col, text)

    def resolve(self, name):
        """The global object a free name of the kernel refers to, or None."""
        return resolve_global(self.globals, name)


_FUTURE_FLAGS = functools.reduce(operator.or_, (getattr(__future__, name).compiler_flag
                                                 for name in __future__.all_feature_names))


def _check_is_the_running_code(fn, definition, text, filename, first_line):
    """The source read from the kernel's file must be the function Python runs: a file edited
    after its module was imported (and not reloaded) is read as it is now, at the lines the
    function had then, so adsrc would differentiate the code there, maybe another function.
    The name is checked, and for a function of a module's top level (whose code does not
    depend on an enclosing scope) the code compiled from the text read, by what of it does not
    depend on the module around the function (:func:`_fingerprint`)."""
    running = inspect.unwrap(fn).__code__
    place = f"{os.path.basename(filename)}:{first_line}"
    stale = (f"the source of {fn.__qualname__} read from {place} is not the code Python runs: "
             f"the file has changed since its module was imported; reload the module "
             f"(importlib.reload) or restart Python")
    if definition.name != running.co_name:
        raise AdsrcError(stale + f" (line {first_line} now defines '{definition.name}')")
    if running.co_freevars or "." in fn.__qualname__:
        return
    compiled = compile(text, filename, "exec", flags=running.co_flags & _FUTURE_FLAGS,
                       dont_inherit=True)
    read = next((const for const in compiled.co_consts if isinstance(const, types.CodeType)
                 and const.co_name == running.co_name), None)
    if read is None or _fingerprint(read) != _fingerprint(running):
        raise AdsrcError(stale)


# instructions whose choice and argument depend on the function's text alone: not how a
# global's attribute is loaded (CPython compiles ``math.sqrt(...)`` otherwise where ``math``
# is bound by an import in the module), nor jump offsets (which that changes)
_TEXTUAL = ("LOAD_FAST", "STORE_FAST", "DELETE_FAST", "LOAD_CONST", "BINARY_OP", "COMPARE_OP",
            "BINARY_SUBSCR", "STORE_SUBSCR", "UNARY_")


def _fingerprint(code):
    """What compilations of the same function's text share wherever it stands in a module:
    the names it uses, its locals and constants, and the order of its local variables' reads
    and writes, constants, operators and subscripts (an edit swapping ``b[i]`` for ``x[i]``
    changes no name)."""
    consts = tuple(_fingerprint(const) if isinstance(const, types.CodeType) else
                   (type(const), repr(const)) for const in code.co_consts)
    steps = tuple((instruction.opname, repr(instruction.argval))
                  for instruction in dis.get_instructions(code)
                  if instruction.opname.startswith(_TEXTUAL)
                  and not isinstance(instruction.argval, types.CodeType))
    return code.co_names, code.co_varnames, consts, steps


def docstring_statements(body):
    """How many of a function body's first statements are its docstring: 1 or 0.  A kernel's
    docstring is left out of what adsrc differentiates, and statements adsrc puts first go after
    it (Python reads a docstring only as the first statement)."""
    return int(bool(body) and isinstance(body[0], gast.Expr)
               and isinstance(body[0].value, gast.Constant))


def resolve_global(namespace, name):
    """What a free name resolves to in a function's globals (then builtins), or None.

    Shared by the fence and by the source key (:mod:`adsrc.compiling.source_key`), which must
    see exactly the objects the fence sees."""
    if name in namespace:
        return namespace[name]
    builtins = namespace.get("__builtins__")
    if isinstance(builtins, dict):
        return builtins.get(name)
    return getattr(builtins, name, None)
