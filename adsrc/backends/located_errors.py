"""Errors raised while a generated module runs, traced to the user's line.

Why: an error raised inside generated code names a line of the generated module (``<adsrc:...>``,
or a ``.pyx`` in the cache) or none at all: a derivative rule's (``np.linalg.norm`` has no
derivative at the zero vector, ``np.linalg.solve`` of a singular matrix), Python's (a math domain
error), or with ``$ADSRC_BOUNDSCHECK=1`` Cython's ``IndexError`` ("Out of bounds on buffer
access (axis 0)", naming neither the array nor the line).  The generated code quotes the user's
line above each statement's code (``# line N: ...``, :func:`adsrc.backends.cython.quoted_lines`),
so the innermost frame of the generated module gives the kernel's line:

* Cython's ``IndexError`` is raised again as ``<file>:<line>: an index outside its array in
  '<the statement>'``, Cython's error chained to it;
* an :class:`~adsrc.errors.AdsrcError` (a rule's) is raised again with ``<file>:<line>:`` and
  the statement in its message;
* any other exception keeps its type and message, and gains a note naming the line (shown in its
  traceback; Python 3.11 and later).
"""

import functools
import inspect
import os
import traceback

from adsrc.backends.cython import quoted_lines
from adsrc.errors import AdsrcError


def checks_bounds(source):
    """Whether a generated Cython module's source was built with every index checked."""
    return "boundscheck=True" in source.split("\n", 1)[0]


def with_user_lines(function, source, kernel):
    """``function`` of the module generated as ``source`` for the entry kernel ``kernel``, with
    its errors naming the user's line."""
    @functools.wraps(function)
    def located(*args):
        try:
            return function(*args)
        except Exception as exc:
            place = _user_place(exc, function.__module__, source, kernel)
            if place is None:
                raise
            where, statement = place
            if isinstance(exc, IndexError) and checks_bounds(source):
                raise IndexError(f"{where}: an index outside its array in '{statement}' "
                                 f"(Cython: {exc})") from exc
            if type(exc) is AdsrcError:
                raise AdsrcError(f"{where}: {exc}, in '{statement}'") from exc
            if hasattr(exc, "add_note"):
                exc.add_note(f"adsrc: raised by {where}, in '{statement}'")
            raise
    return located


def _user_place(exc, module, source, kernel):
    """``(where, statement)`` of the user's statement whose code raised ``exc``: the innermost
    frame of the generated module ``module``; None when it quotes none of the user's lines."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if frame.filename == f"<adsrc:{module}>"
              or os.path.basename(frame.filename) == f"{module}.pyx"]
    lines = quoted_lines(source)
    # the innermost frame at a user's line: a C helper's (an integer division by zero in
    # _floordiv) quotes none
    frame = next((frame for frame in reversed(frames) if frame.lineno in lines), None)
    if frame is None:
        return None
    line, statement = lines[frame.lineno]
    function = frame.name.rsplit(".", 1)[-1]
    if function.rsplit("__", 1)[0] == kernel.__name__:
        return f"{_user_file(kernel)}:{line}", statement
    return f"line {line} of a kernel that {kernel.__name__} calls", statement


def _user_file(kernel):
    """The file of the user's kernel ``kernel`` is, or is derived from (a kernel adsrc derives,
    such as the one taking a sparse matrix argument's arrays, has a code file name of its own,
    ``<adsrc: ..., derived from ...>``, whose lines are the user's file's)."""
    while getattr(kernel, "__adsrc_parent__", None) is not None:
        kernel = kernel.__adsrc_parent__
    return inspect.getsourcefile(kernel)
