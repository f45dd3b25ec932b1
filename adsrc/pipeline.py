"""The pipeline: from a kernel and a call signature to a generated adjoint module.

source -> fence -> types -> normalisation (calls returning arrays inlined first) -> analyses ->
reverse transformation -> backend.

A *specialisation* is one kernel for one argument signature, one set of active arguments and
outputs, and one calling context (the entry kernel, or a callee that must restore the arrays it
writes).  Called kernels are specialised on demand, recursion included; every specialisation
becomes a ``__fwd``/``__rev`` pair in one generated module.
"""

import copy
from dataclasses import dataclass

import gast

from adsrc import __version__
from adsrc.analyses.activity import Activity
from adsrc.analyses.effects import (Effects, directly_written_params, rule_call, user_call,
                                    walk_statements)
from adsrc.analyses.needs import AdjointNeeds
from adsrc.analyses.recompute import Recomputation
from adsrc.analyses.reads_behind import ReadsBehind
from adsrc.analyses.snapshots import ArraySnapshots
from adsrc.analyses.tbr import ToBeRecorded
from adsrc.analyses.types import FLOAT, TypeInference
from adsrc.backends import python as python_backend
from adsrc.backends.cython import CythonModule, line_map
from adsrc.compiling import cython_build
from adsrc.errors import ArgumentError, SignatureError
from adsrc.frontend.derived import kernel_source
from adsrc.frontend.fence import Fence
from adsrc.frontend.quoting import with_quoted_lines
from adsrc.frontend.source import KernelSource
from adsrc.naming import Namer, free
from adsrc.normalize.control import StructureJumps
from adsrc.normalize.desugar import RETURN, Desugar
from adsrc.normalize.inline_calls import InlineCalls
from adsrc.normalize.lower_arrays import LowerArrays
from adsrc.normalize.rebound_arguments import ReboundArguments
from adsrc.normalize.webs import SplitWebs
from adsrc.transformations import rule_calls
from adsrc.transformations.reverse import build_functions
from adsrc.transformations.second_order import build_second_order
from adsrc.transformations.tangent import build_tangent
from adsrc.vector_pipeline import VECTOR_HVP, VECTOR_TANGENT
from adsrc.vector_pipeline import module_source as vector_module_source

ADJOINT, TANGENT, HVP = "adjoint", "tangent", "hvp"
RETURN_OUTPUT = "return"


@dataclass
class FunctionInfo:
    source: KernelSource
    tree: gast.FunctionDef          # fenced, not normalised
    callees: dict                   # called name -> function object


class Program:
    """Every kernel reachable from the entry kernels, fenced once, with call summaries."""

    def __init__(self):
        self._infos = {}
        self._written = {}
        self._returns = {}
        self._inferring = set()
        self._recursive = set()     # the keys whose inference met a call of themselves

    def info(self, fn):
        if fn not in self._infos:
            source = kernel_source(fn)
            fence = Fence(source)
            tree = fence.run()
            self._infos[fn] = FunctionInfo(source, tree, fence.callees)
            for callee in fence.callees.values():
                self.info(callee)
        return self._infos[fn]

    def written_params(self, fn):
        """Indices of the parameters ``fn`` writes, directly or through the kernels it calls."""
        if fn not in self._written:
            self._summarise(fn)
        return self._written[fn]

    def _summarise(self, entry):
        reachable, pending = [], [entry]
        while pending:
            fn = pending.pop()
            if fn in reachable:
                continue
            reachable.append(fn)
            pending.extend(self.info(fn).callees.values())
        direct = {fn: directly_written_params(self.info(fn).tree) for fn in reachable}
        written = {fn: set(direct[fn][0]) for fn in reachable}
        changed = True
        while changed:
            changed = False
            for fn in reachable:
                info = self.info(fn)
                params = info.source.params
                for call in direct[fn][1]:
                    callee = info.callees.get(call.func.id)
                    if callee is None:
                        continue
                    for position, arg in enumerate(call.args):
                        if position in written[callee] and isinstance(arg, gast.Name) \
                                and arg.id in params and params.index(arg.id) not in written[fn]:
                            written[fn].add(params.index(arg.id))
                            changed = True
        for fn in reachable:
            self._written.setdefault(fn, frozenset(written[fn]))

    def return_type(self, fn, signature, called=False):
        """Type of what ``fn`` returns for arguments of these types (None: nothing).
        ``called``: ``fn`` is called by another kernel, and may return an array."""
        key = (fn, signature, called)
        if key in self._returns:
            return self._returns[key]
        if key in self._inferring:
            self._recursive.add(key)
            return FLOAT       # a recursive call: kernels return float scalars
        self._inferring.add(key)
        info = self.info(fn)
        tree = copy.deepcopy(info.tree)
        typer = TypeInference(info.source, tree, signature,
                              self.callee_return(info.source, info.callees),
                              returns_arrays=called)
        try:
            typer.run()
        except SignatureError as error:
            if key not in self._recursive:
                raise
            raise SignatureError(error.message + f"; '{fn.__name__}' calls itself, and adsrc "
                                 "takes the value of such a call to be a float: a function "
                                 "that calls itself may return a scalar only", error.filename,
                                 error.line, error.col, error.source_line) from None
        finally:
            self._inferring.discard(key)
        if key in self._recursive and typer.return_type is not None \
                and typer.return_type.is_array:
            raise info.source.error(info.tree, f"'{fn.__name__}' calls itself and returns an "
                                               "array: adsrc inlines a function returning an "
                                               "array into its caller, which for this one "
                                               "would not end; a function that calls itself "
                                               "may return a scalar only")
        self._returns[key] = typer.return_type
        return typer.return_type

    def callee_return(self, source, callees):
        """The ``callee_return`` of a type inference of a tree by ``source`` calling the
        functions ``callees`` (called name -> function)."""
        def callee_return(call, arg_types):
            if any(kind is None for kind in arg_types):
                return None
            callee = callees[call.func.id]
            if len(arg_types) != len(self.info(callee).source.params):
                raise source.error(call, f"'{call.func.id}' takes "
                                         f"{len(self.info(callee).source.params)} "
                                         f"arguments, {len(arg_types)} given")
            return self.return_type(callee, tuple(arg_types), called=True)
        return callee_return


@dataclass(frozen=True)
class Key:
    fn: object
    signature: tuple
    wrt: frozenset
    outputs: frozenset
    restore: bool          # a callee restores every array argument it writes


class Specialization:
    """One analysed kernel; what :mod:`adsrc.transformations.reverse` transforms."""

    RETURN = RETURN

    def __init__(self, generator, key, stem):
        self.generator = generator
        self.key = key
        program = generator.program
        info = program.info(key.fn)
        self.source = info.source
        self.params = list(info.source.params)
        self.user_functions = dict(info.callees)     # and the functions inlined bodies call
        self.fwd_name = f"{stem}__fwd"
        self.rev_name = f"{stem}__rev"
        self.primal_name = f"{stem}__primal"
        self.tan_name = f"{stem}__tan"
        self._callees = {}
        self._normalise(program, info)
        self._analyse(program)

    def _normalise(self, program, info):
        self.tree = copy.deepcopy(info.tree)
        self.namer = Namer()
        callee_return = program.callee_return(self.source, self.user_functions)
        typer_of = lambda tree: TypeInference(self.source, tree,  # noqa: E731
                                              self.key.signature, callee_return)
        infer = lambda: typer_of(self.tree)     # noqa: E731
        InlineCalls(self.source, program, self.user_functions, self.namer,
                    typer_of).run(self.tree)
        ReboundArguments(self.source, self.key.signature, self.user_functions,
                         program.written_params).run(self.tree)
        typer = infer()
        typer.run()
        Desugar(self.source, typer.env, self.namer, self.user_functions,
                program.written_params).run(self.tree)
        typer = infer()
        typer.run()
        LowerArrays(self.source, typer, self.namer,
                    Effects(self.user_functions, program.written_params)).run(self.tree)
        StructureJumps(self.namer).run(self.tree)
        SplitWebs(self.params, self.user_functions, infer).run(self.tree)
        self.typer = infer()
        self.env = self.typer.run()
        undefined = [name for name, kind in self.env.items() if kind is None]
        if undefined:
            raise ArgumentError(f"{self.source.name}: cannot infer the type of "
                                f"{', '.join(sorted(undefined))}")
        self.returns = any(isinstance(stmt, gast.Return) for stmt in self.tree.body)
        # plain data, which a cache record of the entry keeps (adsrc.compiling.source_key)
        self.array_names = frozenset(name for name, kind in self.env.items() if kind.is_array)

    def _analyse(self, program):
        effects = Effects(self.user_functions, program.written_params)
        self.effects = effects
        self._check_calls(effects)
        outputs = {RETURN if out == RETURN_OUTPUT else out for out in self.key.outputs}
        self.active = Activity(self.tree, self.env, effects, self.key.wrt, outputs).run()
        needs = AdjointNeeds(self.source, self.tree, self.env, self.active,
                             self.user_functions).run()
        self.recompute = Recomputation(self.tree, self.env, effects, needs, self.params).run()
        array_params = [p for p in self.params if self.env[p].is_array]
        reads_behind = ReadsBehind(self.tree, self.env, effects, needs,
                                   self.recompute.slice_reads).run()
        self.tbr = ToBeRecorded(self.tree, effects, needs, self.recompute.recorded,
                                required_on_entry=array_params if self.key.restore else (),
                                slice_reads=self.recompute.slice_reads,
                                reads_behind=reads_behind.stores).run()
        self.snapshots = ArraySnapshots(self.tree, self.env, effects, self.tbr.saves).run()
        array_bars = set(self.key.wrt) | set(self.key.outputs) | self.active
        self.bar_params = [p for p in self.params
                           if p in array_bars and self.env[p].is_float and self.env[p].is_array]
        self.scalar_bar_params = [p for p in self.params if p in set(self.key.wrt) | self.active
                                  and self.env[p].is_float and not self.env[p].is_array]
        self.dot_params = [p for p in self.params if p in self.active and self.env[p].is_float]
        written = effects.written_anywhere(self.tree.body)
        self.written_arrays = [p for p in array_params if p in written]
        # the written arrays the reverse sweep writes older values into: all of them until it is
        # built (adsrc.transformations.reverse.build_functions says which)
        self.restored_arrays = list(self.written_arrays)

    def _check_calls(self, effects):
        for stmt in walk_statements(self.tree.body):
            call = user_call(stmt, self.user_functions)
            if call is None:
                continue
            written = effects.call_writes(call)
            names = [arg.id for arg in call.args if isinstance(arg, gast.Name)
                     and self.env.get(arg.id) is not None and self.env[arg.id].is_array]
            for arg in set(names):
                if names.count(arg) > 1 and arg in written:
                    raise self.source.error(call, f"the array '{arg}' is passed twice to a "
                                                  "kernel that writes it; adsrc assumes distinct "
                                                  "arrays")

    def callee(self, stmt):
        """The specialisation the user-kernel call of a statement goes to."""
        call = user_call(stmt, self.user_functions)
        if id(call) not in self._callees:
            fn = self.user_functions[call.func.id]
            params = self.generator.program.info(fn).source.params
            signature = tuple(self.typer.expr(arg) for arg in call.args)
            active_args = {param for param, arg in zip(params, call.args)
                           if isinstance(arg, gast.Name) and arg.id in self.active}
            written = self.generator.program.written_params(fn)
            outputs = {params[i] for i in written if params[i] in active_args}
            if isinstance(stmt, gast.Assign) and stmt.targets[0].id in self.active:
                outputs.add(RETURN_OUTPUT)
            key = Key(fn, signature, frozenset(active_args), frozenset(outputs), True)
            self._callees[id(call)] = self.generator.specialise(key)
        return self._callees[id(call)]


class Generator:
    """Specialises kernels on demand and assembles one module for an entry kernel."""

    def __init__(self, program):
        self.program = program
        self.specs = {}
        self._stems = set()

    def specialise(self, key):
        if key not in self.specs:
            self.specs[key] = None          # placeholder while analysing (recursion)
            self.specs[key] = Specialization(self, key, self._stem(key.fn.__name__))
        return self.specs[key]

    def _stem(self, name):
        """The stem of a new specialisation's functions (``<stem>__fwd`` ...): the kernel's
        name, or ``<name>_2``, ``<name>_3`` ... for its other specialisations and for functions
        of the same name from other modules, never one taken already: a user's function named
        ``relax_1`` made two definitions of ``relax_1__fwd``, and the second one served both
        calls (a wrong gradient on the Python backend, a failed build on Cython's)."""
        stem = free(name, self._stems)
        self._stems.add(stem)
        return stem

    def _build_all(self, build):
        """``(spec, *build(spec))`` for every specialisation, callees found on the way too."""
        built, done = [], set()
        while True:
            pending = [spec for spec in list(self.specs.values()) if id(spec) not in done]
            if not pending:
                return built
            for spec in pending:
                done.add(id(spec))
                built.append((spec, *build(spec)))

    def source(self, entry, backend, header_note="", display_path=None, mode=ADJOINT,
               tape_module=None):
        """Source text of the module holding the entry and all its callees, for reverse mode
        (``mode="adjoint"``: ``__fwd`` and ``__rev``) or tangent mode (``"tangent"``).  A
        Cython module cimports its tape from ``tape_module``, or carries it when None."""
        if mode in (VECTOR_TANGENT, VECTOR_HVP):
            header = (_tangent_header if mode == VECTOR_TANGENT else _header)(
                entry, backend, display_path)
            return vector_module_source(self, entry, backend, header + header_note, mode,
                                        tape_module)
        if mode == TANGENT:
            built = self._build_all(lambda spec: (build_tangent(spec),))
            header = _tangent_header(entry, backend, display_path) + header_note
            if backend == "python":
                return python_backend.module_source(header, [tangent for _, tangent in built])
            module = CythonModule()
            for spec, tangent in built:
                module.add_tangent(spec, tangent, entry=spec is entry)
            return module.source(header, tape_module)
        built = self._build_all(build_functions)
        header = _header(entry, backend, display_path) + header_note
        if mode == HVP:
            second = [(spec, *build_second_order(spec, forward, reverse))
                      for spec, forward, reverse in built]
            if backend == "python":
                return python_backend.module_source(header, [
                    function for _, forward, reverse in second for function in (forward, reverse)])
            module = CythonModule()
            for spec, forward, reverse in second:
                module.add_second_order(spec, forward, reverse, entry=spec is entry)
            return module.source(header, tape_module)
        if backend == "python":
            functions = [function for _, forward, reverse in built
                         for function in (forward, reverse)]
            return python_backend.module_source(header, functions)
        module = CythonModule()
        for spec, forward, reverse in built:
            module.add(spec, forward, reverse, primal_function(spec), entry=spec is entry)
        return module.source(header, tape_module)

    def module(self, entry, backend, mode=ADJOINT):
        """(source, namespace) of the loaded module holding the entry and all its callees."""
        tape_module = cython_build.runtime_module_name() if backend == "cython" else None
        source = self.source(entry, backend, mode=mode, tape_module=tape_module)
        if backend == "python":
            first = entry.tan_name if mode == TANGENT else entry.fwd_name
            try:
                return source, python_backend.load(source, first)
            except SyntaxError as error:
                if error.msg not in _PARSER_LIMITS:
                    raise
                raise entry.source.error(entry.source.tree, (
                    f"the generated Python nests its statements deeper than Python's parser "
                    f"takes ({error.msg}): each 'if' that breaks holds the rest of its loop's "
                    "body; use the Cython backend, or move part of the loop body into a called "
                    "kernel")) from None
        lines = line_map(source, entry.source.filename)
        return source, vars(cython_build.load(source, entry.source.name, lines))


#: what Python's parser says of code nested deeper than it takes (100 levels of indentation,
#: 20 blocks of loops)
_PARSER_LIMITS = ("too many levels of indentation", "too many statically nested blocks")


def primal_function(spec):
    """The normalised kernel as a function, its calls sent to the callees' primals, each
    statement's code after a comment quoting the user's line."""
    tree = copy.deepcopy(spec.tree)
    for original, stmt in zip(walk_statements(spec.tree.body), walk_statements(tree.body)):
        call = user_call(stmt, spec.user_functions)
        if call is not None:
            call.func = gast.Name(spec.callee(original).primal_name, gast.Load(), None, None)
    tree.body = _primal_statements(tree.body, spec.source)
    tree.name = spec.primal_name
    return tree


def _primal_statements(stmts, source):
    """``stmts`` with array-valued rule calls written as ``_rules.f.into(u, ...)``, and the
    user's lines quoted."""
    blocks = []
    for stmt in stmts:
        if rule_call(stmt) is not None:
            blocks.append((source.quoted_line(stmt), rule_calls.primal(stmt)))
            continue
        for field in ("body", "orelse"):
            if getattr(stmt, field, None):
                setattr(stmt, field, _primal_statements(getattr(stmt, field), source))
        blocks.append((source.quoted_line(stmt), [stmt]))
    return with_quoted_lines(blocks)


def _origin(entry, what, backend, display_path):
    """The first lines of a generated module's docstring: what it is, of which kernel."""
    filename, line, _ = entry.source.location(entry.source.tree)
    filename = display_path or filename
    order = entry.params + [RETURN_OUTPUT]
    wrt = ", ".join(sorted(entry.key.wrt, key=order.index)) or "-"
    outputs = ", ".join(sorted(entry.key.outputs, key=order.index)) or "-"
    signature = ", ".join(f"{p}: {kind}" for p, kind in zip(entry.params, entry.key.signature))
    return (f"{what} of {entry.source.name} ({filename}:{line}), generated by adsrc "
            f"{__version__} ({backend} backend).\n\n"
            f"wrt: {wrt}; outputs: {outputs}\nsignature: {signature}\n\n")


def _header(entry, backend, display_path=None):
    bars = ", ".join(p + "_bar" for p in entry.bar_params) or "no array adjoints"
    seed = ", _ret_bar" if entry.returns else ""
    scalars = ", ".join(p + "_bar" for p in entry.scalar_bar_params)
    returned = f" It returns ({scalars},)." if scalars else ""
    primal = (f"{entry.primal_name}(args...) is the compiled primal.\n"
              if backend == "cython" else "")
    return (_origin(entry, "Adjoint", backend, display_path) + primal +
            f"{entry.fwd_name}(args..., tape) runs the primal and records on the tape;\n"
            f"{entry.rev_name}(args..., {bars}{seed}, tape) runs the reverse sweep: the bars of\n"
            f"mutated arrays hold adjoints of final values on entry and of initial values on\n"
            f"return, the others are incremented.{returned}\n"
            f"The reverse sweep restores overwritten values, so a mutated array ends in an\n"
            f"intermediate state: copy it after the forward sweep if you need the result.\n")


def _tangent_header(entry, backend, display_path=None):
    dots = ", ".join(p + "_dot" for p in entry.dot_params) or "no tangents"
    returned = " It returns (value, value_dot)." if entry.returns else ""
    return (_origin(entry, "Tangent", backend, display_path) +
            f"{entry.tan_name}(args..., {dots}) runs the primal and carries the tangents: the\n"
            f"_dot of each argument holds its direction on entry, and the _dot of a mutated\n"
            f"array the tangent of its final value on return.{returned}\n")


def specialise_entry(program, fn, signature, wrt, outputs):
    """The generator and entry specialisation for a top-level adjoint."""
    generator = Generator(program)
    key = Key(fn, signature, frozenset(wrt), frozenset(outputs), False)
    return generator, generator.specialise(key)
