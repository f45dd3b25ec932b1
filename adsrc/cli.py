"""The command line: ``adsrc generate path/to/kernels.py:gauss_seidel --wrt data,b ...``.

Exit status: 0 on success, 1 for a user error, 2 for a usage error (argparse).  A user error is
one line on stderr, ``file:line:col: error: message`` (then the source line and a caret) when it
has a place in a file (code adsrc cannot differentiate, a kernel file that does not parse or
fails when it runs, a target that is not a function), else ``adsrc: error: message``.
"""

import argparse
import ast
import importlib.util
import inspect
import os
import re
import shlex
import sys
import traceback

from adsrc.api import Differentiable
from adsrc.errors import AdsrcError
from adsrc.offline import generate

_LOCATED = re.compile(r"^.+?:\d+:\d+: error: ")


class _UserError(AdsrcError):
    """A user error of the command line, with an optional place in a file."""

    def __init__(self, message, filename=None, line=None, col=None, source_line=None):
        if filename is not None and line:
            text = f"{filename}:{line}:{col or 1}: error: {message}"
            if source_line and source_line.strip():
                source_line = source_line.rstrip("\r\n")
                indent = "".join(c if c == "\t" else " " for c in source_line[:(col or 1) - 1])
                text += f"\n    {source_line}\n    {indent}^"
        else:
            text = f"adsrc: error: {message}"
        super().__init__(text)


def _source_line(path, line):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, text in enumerate(handle, start=1):
                if number == line:
                    return text
    except OSError:
        pass
    return None


def _same_file(a, b):
    return os.path.abspath(a) == os.path.abspath(b)


def _syntax_error(exc, path):
    filename = path if not exc.filename or _same_file(exc.filename, path) else exc.filename
    line = exc.lineno or None
    col = exc.offset if exc.offset and exc.offset > 0 else 1
    text = exc.text if exc.text is not None else (_source_line(filename, line) if line else None)
    return _UserError(exc.msg or "invalid syntax", filename, line, col, text)


def _raised_while_loading(exc, path):
    """An exception raised by running the kernel file: located at the innermost line of that
    file in the traceback."""
    where = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if _same_file(frame.filename, path):
            where = frame
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    message = f"running {path} raised {detail}"
    if where is None:
        return _UserError(message)
    col = (where.colno + 1) if getattr(where, "colno", None) is not None else 1
    return _UserError(message, path, where.lineno, col, where.line)


def _binding(path, name):
    """(line, col, source line) of the last top-level statement of ``path`` binding ``name``."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        tree = ast.parse(text)
    except (OSError, SyntaxError, ValueError):
        return None
    found = None
    for stmt in tree.body:
        names = []
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [stmt.name]
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            names = [(alias.asname or alias.name).split(".")[0] for alias in stmt.names]
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            names = [node.id for target in targets for node in ast.walk(target)
                     if isinstance(node, ast.Name)]
        if name in names:
            found = stmt
    if found is None:
        return None
    lines = text.splitlines()
    return found.lineno, found.col_offset + 1, lines[found.lineno - 1]


def _functions_in(module):
    return sorted(key for key, value in vars(module).items()
                  if callable(value) and getattr(value, "__module__", None) == module.__name__
                  and not isinstance(value, type))


def _load(target):
    """The function ``FILE.py:FUNCTION`` names; raises :class:`_UserError`."""
    path, _, name = target.rpartition(":")
    if not path or not name.isidentifier():
        raise _UserError(f"expected FILE.py:FUNCTION, got {target!r}")
    if not os.path.exists(path):
        raise _UserError(f"{path}: no such file")
    if os.path.isdir(path):
        raise _UserError(f"{path}: is a directory, not a Python file")
    # the module's own name, as 'import <file>' gives it: derivative rules it declares are named
    # after it in the generated code, which finds them when the user imports the module so
    stem = os.path.splitext(os.path.basename(path))[0]
    module_name = stem if stem.isidentifier() and stem not in sys.modules \
        else "adsrc_cli_" + re.sub(r"\W", "_", stem)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None:
        raise _UserError(f"{path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    # the file's directory first on the path while it runs, as 'python FILE.py' has it: the
    # kernels' own modules beside it ('from helpers import row_dot') import as they do there
    directory = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, directory)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[module_name]
        raise _syntax_error(exc, path) from None
    except (Exception, SystemExit) as exc:      # the user's module-level code failed
        del sys.modules[module_name]
        raise _raised_while_loading(exc, path) from None
    finally:
        sys.path.remove(directory)
    fn = getattr(module, name, None)
    if isinstance(fn, Differentiable) or inspect.isfunction(fn):
        return fn
    del sys.modules[module_name]
    if not hasattr(module, name):
        functions = _functions_in(module)
        hint = f" (functions defined there: {', '.join(functions)})" if functions else ""
        raise _UserError(f"{path}: no function named {name!r}{hint}")
    message = f"{name!r} is {_kind(fn)}, not a Python function defined with 'def'"
    where = _binding(path, name)
    if where is None:
        raise _UserError(f"{path}: {message}")
    raise _UserError(message, path, *where)


def _kind(value):
    if inspect.isclass(value):
        return "a class"
    if inspect.ismodule(value):
        return "a module"
    if inspect.isbuiltin(value):
        return "a built-in function"
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{type(value).__name__} {text}"


def _names(text):
    """The names of a comma-separated option; None when it was not given (an empty one is
    refused as empty)."""
    if text is None:
        return None
    return tuple(item.strip() for item in text.split(",") if item.strip())


def parser():
    top = argparse.ArgumentParser(prog="adsrc", description="Source-transformation AD for "
                                  "in-place numeric kernels.")
    commands = top.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write the adjoint of a kernel as source files")
    gen.add_argument("target", help="FILE.py:FUNCTION")
    gen.add_argument("--wrt", required=True, help="comma-separated names to differentiate by")
    gen.add_argument("--outputs", help="comma-separated outputs (array names and/or 'return')")
    gen.add_argument("--types", help="argument types, one per parameter, separated by ';', "
                     "e.g. 'int32[:];int32[:];float64[:];float64[:];float64[:];int' (quote it "
                     "in a shell); default: the parameters' string annotations")
    gen.add_argument("--backend", choices=("cython", "python"), default="cython")
    gen.add_argument("-o", "--output-dir", default=".", help="directory for the files")
    return top


def _message(exc, path):
    """An AdsrcError as a diagnostic: located errors as they are, with the kernel file named as
    the command line names it (adsrc's errors give the absolute path), others as ``adsrc:
    error:``."""
    text = str(exc)
    absolute = os.path.abspath(path) + ":"
    if _LOCATED.match(text) and text.startswith(absolute):
        return path + ":" + text[len(absolute):]
    if _LOCATED.match(text) or text.startswith("adsrc: "):
        return text
    return f"adsrc: error: {text}"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    # the command as it can be pasted into a shell: ';' in --types, spaces in paths quoted
    command = "adsrc " + shlex.join(argv)
    if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        print(f"adsrc: error: -o {args.output_dir}: not a directory (-o names the directory "
              f"the files go to)", file=sys.stderr)
        return 1
    try:
        fn = _load(args.target)
        # a ';' after the last type, as after the last statement of a line, ends the list
        types = args.types.strip().removesuffix(";").split(";") if args.types else None
        filename, source = generate(fn, _names(args.wrt), _names(args.outputs), types,
                                    args.backend, command)
    except AdsrcError as exc:
        print(_message(exc, args.target.rpartition(":")[0]), file=sys.stderr)
        return 1
    path = os.path.join(args.output_dir, filename)
    try:
        os.makedirs(args.output_dir, exist_ok=True)
        with open(path, "w") as handle:
            handle.write(source)
    except OSError as exc:
        print(f"adsrc: error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(path)
    return 0
