"""The source key: a compiled module found in the cache without running the pipeline.

A module's own cache key (:func:`adsrc.compiling.cache.key`) hashes its generated source, so a
cache hit used to run the fence, the normalisation, every analysis and the code generation only
to hash their result: tens of milliseconds per kernel.  The source key hashes instead what the
generated source is a function of, all of it cheap to read:

* the source text, file and first line of the kernel and of every user function it calls,
  transitively, read as :class:`~adsrc.frontend.source.KernelSource` reads them (an edited
  file is read again); for a kernel adsrc derived from a user's (the step of a checkpointed
  loop, a kernel taking sparse matrices), the user's kernel and the derived tree;
* what every global name those functions read resolves to, as the fence resolves it: a numeric
  module constant by its value (the fence inlines it), a library function by its canonical name
  or by its derivative rule (or split into parts with rules), a called user function
  recursively, a module by its name;
* the wrt names, the outputs, the argument types, the mode and the backend;
* adsrc's own code (a hash of the package's source files, once per process), the versions of
  the libraries the generator depends on, the toolchain
  (:func:`~adsrc.compiling.cache.toolchain_tag`) and the Cython directives
  (:func:`~adsrc.backends.cython.directives`: ``$ADSRC_BOUNDSCHECK``).

The key names a *record* in the cache directory (``keys/``): the module's name, its generated
source and the entry specialisation's plain-data attributes (parameter lists, function names),
which is what the callers of a compiled module read.

A stale module must never be loaded, so the key errs on the side of missing:

* a global the key cannot describe deterministically (an array, an arbitrary object) gives no
  key at all: the pipeline runs, as it always did;
* a record is written only after a pipeline run on a fresh :class:`~adsrc.pipeline.Program`
  (nothing fenced before the key was computed), and only if the key computed again after the
  run is the same: the sources and constants did not change while it ran;
* a record or a module file that cannot be read or imported counts as absent, and the pipeline
  run that follows rebuilds it.

A miss costs only the pipeline run: the generated source then finds its binary by the module's
own key, so an over-cautious source key never recompiles anything.  A new input to the
generator (anything not listed above that changes the generated code) must be added here.
"""

import ast
import functools
import hashlib
import inspect
import numbers
import os
import pickle
import tempfile
import textwrap
import types

import gast
import numpy as np

import adsrc
from adsrc.backends import cython as cython_backend
from adsrc.compiling import cache, cython_build
from adsrc.frontend import intrinsics, sparse_matrices
from adsrc.frontend.source import resolve_global
from adsrc.pipeline import Key
from adsrc.rules import library


class SourceKey:
    """The source key of one compiled module: ``value`` (None: no key, always a miss)."""

    def __init__(self, fn, wrt, outputs, signature, backend, mode):
        self._inputs = fn, wrt, outputs, signature, backend, mode
        self.fn, self.signature = fn, signature
        # only compiled modules are cached; the Python backend's loading is an exec
        self.value = _digest(*self._inputs) if backend == "cython" else None

    def load(self, specialise):
        """``(entry, source, namespace)`` of the recorded module, or None.  ``specialise()``
        runs the pipeline for the entry specialisation, should a caller read an attribute of
        the entry that the record does not hold."""
        if self.value is None:
            return None
        try:
            with open(_record_path(self.value), "rb") as handle:
                record = pickle.load(handle)
            name, source = record["module"], record["source"]
            fields, key_fields = record["entry"], record["key"]
        except FileNotFoundError:
            return None
        except Exception:           # noqa: BLE001 - unreadable: absent; the pipeline rewrites it
            return None
        module = cython_build.load_built(name)
        if module is None:
            return None
        key = Key(fn=self.fn, signature=self.signature, **key_fields)
        return RecordedEntry(fields, key, specialise), source, vars(module)

    def record(self, entry, source, namespace):
        """Record the module the pipeline just generated and loaded for this key (see the
        module docstring for when it is not recorded)."""
        if self.value is None or _digest(*self._inputs) != self.value:
            return
        key_fields = {name: getattr(entry.key, name) for name in entry.key.__dataclass_fields__
                      if name not in ("fn", "signature")}
        if not all(_plain(value) for value in key_fields.values()):
            return
        fields = {name: value for name, value in vars(entry).items() if _plain(value)}
        record = {"module": namespace["__name__"], "source": source, "entry": fields,
                  "key": key_fields}
        path = _record_path(self.value)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=os.path.dirname(path), suffix=".tmp",
                                         delete=False) as handle:
            pickle.dump(record, handle, protocol=pickle.HIGHEST_PROTOCOL)
        cache.publish(handle.name, path)


class RecordedEntry:
    """An entry specialisation as recorded: its plain-data attributes, and ``key``.  Any other
    attribute comes from the specialisation itself, the pipeline run on first use."""

    def __init__(self, fields, key, specialise):
        vars(self).update(fields)
        self.key = key
        self._specialise = specialise
        self._full = None

    def __getattr__(self, name):        # only for what the record does not hold
        if name.startswith("_"):
            raise AttributeError(name)
        if self._full is None:
            self._full = self._specialise()
        return getattr(self._full, name)


def _plain(value):
    """Whether a value is plain data (names, flags, counts, collections of them): what a
    record keeps of an entry, so that loading it needs none of adsrc's classes."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_plain(item) for item in value)
    return False


def _record_path(value):
    return os.path.join(cache.cache_dir(), "keys", value + ".pickle")


def _digest(fn, wrt, outputs, signature, backend, mode):
    """The key's hex digest, or None when a dependency cannot be described."""
    try:
        dependencies = _describe_function(fn, {})
    except _Undescribable:
        return None
    digest = hashlib.sha256()
    for part in (dependencies, repr(wrt), repr(outputs), repr(signature), backend, mode,
                 _generator_tag(), cache.toolchain_tag(cython_build.keyed_flags()),
                 cython_backend.directives()):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


class _Undescribable(Exception):
    pass


def _describe_function(fn, seen):
    """Text that changes whenever the code generated for ``fn`` (and its callees) may: its
    source and location, and the description of every global name it reads."""
    if fn in seen:
        return f"function #{seen[fn]}"
    seen[fn] = len(seen)
    if getattr(fn, "__adsrc_parent__", None) is not None:
        return _describe_derived(fn, seen)
    try:
        lines, first_line = inspect.getsourcelines(fn)
        filename = inspect.getsourcefile(fn)
    except (OSError, TypeError):
        raise _Undescribable from None
    text = "".join(lines)
    parts = [f"function {fn.__module__}.{fn.__qualname__} named {fn.__name__} at "
             f"{filename}:{first_line}", text]
    for name, value in _globals_read(fn, text):
        parts.append(f"{name} = {_describe(value, seen)}")
    return "\n".join(parts)


def _describe_derived(fn, seen):
    """A kernel adsrc derived from a user's (:mod:`adsrc.frontend.derived`), which has no file
    to read: the kernel it was derived from, which fixes its tree and the lines its errors and
    comments quote, and the tree itself, locations included, with the global names it reads."""
    tree = gast.gast_to_ast(fn.__adsrc_source__().tree)
    parent = _describe_function(fn.__adsrc_parent__, seen)
    parts = [f"function {fn.__name__} derived from {parent}",
             ast.dump(tree, include_attributes=True)]
    for name, value in _globals_read(fn, ast.unparse(tree)):
        parts.append(f"{name} = {_describe(value, seen)}")
    return "\n".join(parts)


def _globals_read(fn, text):
    """``(dotted name, object)`` for every global name and attribute chain the fence may
    resolve in the function's source, sorted: names not assigned in the function, followed
    through modules like the fence follows ``np.linalg.solve``."""
    return sorted((".".join(chain), _resolved(fn.__globals__, chain))
                  for chain in _free_chains(text))


def _resolved(namespace, chain):
    value = resolve_global(namespace, chain[0])
    for attr in chain[1:]:
        value = getattr(value, attr, None) if isinstance(value, types.ModuleType) else None
    return value


def watched_globals(fn):
    """``[(namespace, chain, object)]``: the global names (or attribute chains through modules)
    that ``fn`` and the user functions it calls read, whose values the generated code was made
    from: the numbers the fence inlines, and the user functions themselves, as they resolve
    now.  A :class:`~adsrc.api.Differentiable` keeps its compiled modules only while
    :func:`unchanged` says so: the source key misses when a module constant changes
    (``cfg.OMEGA = 1.2``) or a callee is rebound, and so must a module kept in memory."""
    watched = []
    _watch(fn, watched, set())
    return watched


def _watch(fn, watched, seen):
    if fn in seen:
        return
    seen.add(fn)
    try:
        if getattr(fn, "__adsrc_parent__", None) is not None:
            _watch(fn.__adsrc_parent__, watched, seen)
            chains = _free_chains(ast.unparse(gast.gast_to_ast(fn.__adsrc_source__().tree)))
        else:
            chains = _free_chains(inspect.getsource(fn))
    except (OSError, TypeError, _Undescribable):
        return                  # adsrc refuses a kernel it cannot read before it gets here
    for chain in chains:
        value = _resolved(fn.__globals__, chain)
        kernel = getattr(value, "__wrapped_kernel__", value)
        if isinstance(kernel, types.FunctionType) and not _in_adsrc(kernel):
            watched.append((fn.__globals__, chain, value))
            _watch(kernel, watched, seen)
        elif isinstance(value, (numbers.Number, np.bool_)):
            watched.append((fn.__globals__, chain, value))


def unchanged(watched):
    """Whether every name of :func:`watched_globals` still resolves to the same object."""
    return all(_resolved(namespace, chain) is value for namespace, chain, value in watched)


@functools.lru_cache(maxsize=256)
def _free_chains(text):
    """The names (with their attribute chains: ``("np", "linalg", "solve")``) a function's
    source reads but never assigns or takes as a parameter.  Parsed once per source text."""
    try:
        tree = ast.parse(textwrap.dedent(text))
    except SyntaxError:
        raise _Undescribable from None
    local, chains = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            local.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            local.add(node.id)
        elif isinstance(node, (ast.Name, ast.Attribute)):
            chain = []
            while isinstance(node, ast.Attribute):
                chain.append(node.attr)
                node = node.value
            if isinstance(node, ast.Name):
                chains.add((node.id, *reversed(chain)))
    return tuple(chain for chain in chains if chain[0] not in local)


def _describe(value, seen):
    """A deterministic description of what a global name resolves to, in the order the fence
    tries them; raises _Undescribable for anything else."""
    if value is None:
        return "None"
    if isinstance(value, types.ModuleType):
        return f"module {value.__name__}"
    canonical = intrinsics.canonical(value)
    if canonical is not None:
        return f"intrinsic {canonical}"
    rule, split = library.lookup(value), library.split_of(value)
    if rule is not None or split is not None:
        # the generated code calls rules by name, and types their results by their rule
        parts = [] if split is None else [library.lookup(part) for part in split.parts]
        return " | ".join(_attributes(item) for item in [rule, split, *parts])
    if sparse_matrices.recognised(value):
        return f"sparse spelling {library.spelled(value)}"
    kernel = getattr(value, "__wrapped_kernel__", value)
    if isinstance(kernel, types.FunctionType) and _in_adsrc(kernel):
        # adsrc.checkpointed, a shipped kernel: their code is in the generator's tag
        return f"adsrc's {kernel.__module__}.{kernel.__qualname__}"
    if isinstance(kernel, types.FunctionType):
        return _describe_function(kernel, seen)
    if isinstance(value, (numbers.Number, np.bool_)):
        return f"{type(value).__qualname__} {value!r}"
    raise _Undescribable


def _in_adsrc(fn):
    """Whether ``fn`` is defined in a file of adsrc's package (:func:`_generator_tag` hashes)."""
    return os.path.abspath(fn.__code__.co_filename).startswith(
        os.path.dirname(os.path.abspath(adsrc.__file__)) + os.sep)


def _attributes(obj):
    """A derivative rule's (or a split's) attributes, the same in every process."""
    if obj is None:
        return "None"
    return f"{type(obj).__name__}(" + ", ".join(
        f"{name}={_stable_repr(item)}" for name, item in sorted(vars(obj).items())) + ")"


def _stable_repr(item):
    """``repr``, with functions by name, and nothing that names a memory address."""
    if isinstance(item, (list, tuple)):
        return "[" + ", ".join(_stable_repr(element) for element in item) + "]"
    if callable(item):
        return library.spelled(item)
    text = repr(item)
    if " at 0x" in text:
        raise _Undescribable
    return text


@functools.lru_cache(maxsize=None)
def _generator_tag():
    """adsrc's code (every source file of the package) and the versions of the libraries the
    generator depends on, hashed once per process: any change to the generator is a miss."""
    root = os.path.dirname(adsrc.__file__)
    digest = hashlib.sha256(f"gast {gast.__version__} numpy {np.__version__}".encode())
    paths = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
        paths += [os.path.join(directory, f) for f in files
                  if f.endswith((".py", ".pyx", ".pxd", ".pxi"))]
    for path in sorted(paths):
        digest.update(os.path.relpath(path, root).encode() + b"\0")
        with open(path, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()
