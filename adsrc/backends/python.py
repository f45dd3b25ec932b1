"""The Python backend: generated trees printed as a readable module and executed.

The generated module imports only ``math`` and ``numpy``; the tape is passed in by the caller, so
the module can be saved and used without adsrc, unless the kernel calls library functions with
derivative rules (:mod:`adsrc.rules.library`), which it then imports from adsrc.
"""

import ast
import copy
import re

import gast

from adsrc.frontend.quoting import COMMENT_MARK, quote_expr, unparse
from adsrc.rules.library import RULES

# A comment marker prints as a string statement; as the first statement of a function body
# ast.unparse prints it as a docstring, in triple quotes.
_COMMENT_LINE = re.compile(r"^(\s*)(\"{3}|'{3}|'|\")" + re.escape(COMMENT_MARK) + r"(.*)\2$")


def _comments(text):
    lines = []
    for line in text.splitlines():
        match = _COMMENT_LINE.match(line)
        if match:
            body = ast.literal_eval(match.group(2) + COMMENT_MARK + match.group(3)
                                    + match.group(2))[len(COMMENT_MARK):]
            line = f"{match.group(1)}# {body}"
        lines.append(line)
    return "\n".join(lines)


def module_source(header, functions):
    """Source text of a module with a docstring ``header`` and the given FunctionDefs."""
    body = "\n\n\n".join(unparse(_ExplicitChecks().visit(copy.deepcopy(function)))
                         for function in functions)
    imports = "import math\n\nimport numpy as np\n" + rules_import(body)
    return _comments('"""' + header + '"""\n\n' + imports + "\n\n" + body + "\n")


class _ExplicitChecks(gast.NodeTransformer):
    """The checks run with the kernel (shapes, bindings) as ``if not test: raise
    AssertionError(message)``: ``python -O`` strips ``assert`` statements, and the code after a
    failed check would compute wrong numbers."""

    def visit_Assert(self, stmt):
        return gast.copy_location(gast.If(
            test=gast.UnaryOp(op=gast.Not(), operand=stmt.test),
            body=[gast.Raise(exc=quote_expr("AssertionError(M)", M=stmt.msg), cause=None)],
            orelse=[]), stmt)


def rules_import(body):
    """The import a generated module needs when it calls derivative rules (and only then)."""
    if RULES + "." not in body:
        return ""
    return f"\nfrom adsrc.runtime.rule_calls import RULES as {RULES}\n"


def load(source, module_name):
    """Execute a generated module's source; returns its namespace."""
    namespace = {"__name__": module_name}
    exec(compile(source, f"<adsrc:{module_name}>", "exec"), namespace)
    return namespace
