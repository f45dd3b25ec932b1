"""An ``IndexError`` of a module built with ``$ADSRC_BOUNDSCHECK=1``, traced to the user's line.

Why: Cython's message names neither the array nor the line ("Out of bounds on buffer access
(axis 0)"), and its traceback names a line of the generated ``.pyx`` in the cache.  The generated
code quotes the user's line above each statement's code (``# line N: ...``,
:func:`adsrc.backends.cython.quoted_lines`), so the failing line of the ``.pyx`` gives the
kernel's: the error is raised again as ``<file>:<line>: an index outside its array in '<the
statement>'``, Cython's error chained to it.  Only modules built with the checks are wrapped
(an unchecked module raises no IndexError: it reads or writes outside the array).
"""

import functools
import inspect
import traceback

from adsrc.backends.cython import quoted_lines


def checks_bounds(source):
    """Whether a generated Cython module's source was built with every index checked."""
    return "boundscheck=True" in source.split("\n", 1)[0]


def with_user_lines(function, source, kernel):
    """``function`` of the module generated as ``source`` for the entry kernel ``kernel``, with
    its IndexError naming the user's line."""
    @functools.wraps(function)
    def located(*args):
        try:
            return function(*args)
        except IndexError as exc:
            raise _located(exc, source, kernel) from exc
    return located


def _located(exc, source, kernel):
    """The IndexError to raise for Cython's ``exc``; ``exc`` itself when it was not raised by
    the generated code (by a derivative rule's Python code that it called, say), or on a line
    that quotes none of the user's."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames[-1].filename.endswith(".pyx"):
        return exc
    quoted = quoted_lines(source).get(frames[-1].lineno)
    if quoted is None:
        return exc
    line, statement = quoted
    function = frames[-1].name.rsplit(".", 1)[-1]
    if function.rsplit("__", 1)[0] == kernel.__name__:
        where = f"{inspect.getsourcefile(kernel)}:{line}"
    else:
        where = f"line {line} of a kernel that {kernel.__name__} calls"
    return IndexError(f"{where}: an index outside its array in '{statement}' (Cython: {exc})")
