"""Kernels adsrc derives from a user's kernel, such as the step of a checkpointed loop
(:mod:`adsrc.frontend.outline`).

The pipeline keys everything on function objects and reads each kernel's source from its file.
A derived kernel has no file of its own, so it is made a real function (the Python backend runs
it as the primal), compiled from its tree into the user's module globals (so its global names
resolve as the user's kernel's do, without adding a name to that module), and it carries its
:class:`DerivedSource`: its own tree and parameters with the user's file, lines and globals, so
that every error about it points at the user's lines.
"""

import ast
import copy
import types

import gast

from adsrc.frontend.source import KernelSource


def kernel_source(fn):
    """The :class:`KernelSource` of a kernel: the one a derived kernel carries, or read from the
    kernel's file.  A new one on each call: the fence rewrites the tree it is given."""
    derived = getattr(fn, "__adsrc_source__", None)
    return derived() if derived is not None else KernelSource(fn)


class DerivedSource(KernelSource):
    """The source of a derived kernel (built from its tree, not read from a file)."""

    def __init__(self, parent, tree, fn):       # noqa: super().__init__ reads a file
        self.fn = fn
        self.name = tree.name
        self.filename, self.first_line, self.indent = (parent.filename, parent.first_line,
                                                       parent.indent)
        self.lines, self.globals = parent.lines, fn.__globals__
        self.params = [arg.id for arg in tree.args.args]
        self.tree = copy.deepcopy(tree)


def derived_kernel(parent, tree, extra_globals=None):
    """The function of ``tree`` (a ``gast.FunctionDef`` with the locations of ``parent``'s
    tree), in the globals of ``parent``'s kernel.  Its code names a file of its own, which
    ``inspect`` cannot read: the source key (:mod:`adsrc.compiling.source_key`) describes it by
    ``parent``'s kernel and the tree.

    ``extra_globals``: names the derived code needs that the user's module may not have; the
    function then runs in a copy of the module's globals with them added (a snapshot: later
    changes of the module's globals are not seen)."""
    module = gast.gast_to_ast(gast.Module(body=[copy.deepcopy(tree)], type_ignores=[]))
    ast.fix_missing_locations(module)
    code = compile(module, f"<adsrc: {tree.name}, derived from {parent.filename}>", "exec")
    function_code = next(const for const in code.co_consts if isinstance(const, types.CodeType))
    namespace = {**parent.globals, **extra_globals} if extra_globals else parent.globals
    fn = types.FunctionType(function_code, namespace, tree.name)
    fn.__adsrc_source__ = lambda: DerivedSource(parent, tree, fn)
    fn.__adsrc_parent__ = parent.fn         # what the source key describes it by
    return fn
