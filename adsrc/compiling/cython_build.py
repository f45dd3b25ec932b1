"""Building a generated ``.pyx`` into an extension module, in-process.

Cython's ``cythonize`` and setuptools' ``build_ext`` run in a private temporary directory inside
the cache; the finished ``.so`` is renamed into the cache.  All modules share one Cython utility
module (Cython >= 3.1), built once per toolchain, so a kernel compiles in well under a second
instead of several; and all cimport their tape from adsrc's runtime module, built once the same
way: the tape (:mod:`adsrc.runtime.compiled_tape`) and the check a compiled call makes of its
arrays (:mod:`adsrc.runtime.compiled_call_check`).  A generated module's Cython glue (argument
parsing, module initialisation) is compiled with less optimisation than its kernels
(:mod:`adsrc.compiling.glue`), which nearly halves the C compiler's time.  A failed build raises
:class:`~adsrc.errors.AdsrcError` naming the user's kernel file and line when the failure can be
traced to a generated line.

Builds in one process are serialised by a lock: the output capture of a build redirects the
process's file descriptors 1 and 2 and ``sys.stdout``/``sys.stderr``, which two overlapping
captures would restore in the wrong order (the process's output lost for good).  Two threads
that need the same new module build it once.  (Other processes are handled by the cache's atomic
renames.)
"""

import contextlib
import functools
import importlib.util
import io
import os
import re
import shlex
import shutil
import sys
import tempfile
import threading

from adsrc.compiling import cache, glue
from adsrc.errors import AdsrcError
from adsrc.runtime import compiled_call_check, compiled_tape

# -fno-math-errno: errno is never read, and without it a derivative expression's repeated
# sqrt/exp calls could not be shared.  -g0 overrides the -g of Python's own CFLAGS: debug
# information for the ~12,000 lines of C Cython writes per module more than doubled the C
# compiler's time (3.5 s -> 1.5 s for a small kernel), and a kernel is debugged with
# backend="python".  Strict aliasing (gcc's default at -O2 and up, and Python's own CFLAGS here):
# a store to a double array then does not force the next read of an int index array from memory
# again, as in a reverse sweep's ``data_bar[k] += ...; x_bar[indices[k]] += ...``.  The gain is
# a few per cent at most: with -fno-strict-aliasing the shipped kernels' adjoints took 0.96-1.06x
# the time, longer for 13 of 20 kernel and grid pairs (benchmarks/FLAGS_fno-strict-aliasing.md,
# median over three layouts).  Generated code puns no types: every array is read as the dtype
# its memoryview was checked against.  -O3 and not -O2: with -O2 the adjoints took 0.96-1.06x
# the time and a kernel's build 0.73-1.30x, within the builds' own spread
# (benchmarks/FLAGS_O2.md).  (setup.py builds the shipped kernels with the same flags.)
FLAGS = ["-O3", "-g0", "-fno-math-errno"]
FLAGS_VARIABLE = "ADSRC_CFLAGS"

# Held while a build runs and while its output is captured (re-entrant: ``load`` holds it around
# the whole find-or-build, ``_captured_output`` again around the capture).
_BUILD_LOCK = threading.RLock()


def compile_flags():
    """The C compiler's flags for a generated module: adsrc's, then the user's from
    ``$ADSRC_CFLAGS`` (shell syntax, e.g. ``-march=native``), last so that they win.  They are
    part of every module's cache key: changing them builds new modules, never reuses old ones.

    Extra flags are for the user's machine (``-march=native``), and for the benchmarks: the
    same loop's time moves by up to a third with where the linker happens to put it, and
    rebuilding under several ``-falign-loops`` values measures that spread
    (``benchmarks/layout.py``)."""
    return FLAGS + shlex.split(os.environ.get(FLAGS_VARIABLE, ""))


def keyed_flags():
    """The flags as a generated module's cache key sees them: the C compiler's, and how the
    module's glue is compiled (:mod:`adsrc.compiling.glue`)."""
    return compile_flags() + [glue.RECIPE]


def _shared_name():
    return "_adsrc_cyutility_" + cache.key("shared utility module", FLAGS)[:12]


def _runtime_sources():
    """{suffix: text} of the runtime module: the tape's declarations, which generated modules
    cimport, and its implementation with the call check."""
    return {".pxd": compiled_tape.declarations(),
            ".pyx": compiled_tape.implementation() + compiled_call_check.implementation()}


@functools.lru_cache(maxsize=None)
def runtime_module_name():
    """The name of the runtime module generated modules cimport their tape from: it changes
    with its source and the toolchain, so a module never finds a tape of another layout."""
    return "_adsrc_runtime_" + cache.key("".join(_runtime_sources().values()), FLAGS)[:12]


def _runtime_module():
    _ensure_support(cache.cache_dir())
    return sys.modules[runtime_module_name()]


def tape_class():
    """The ``Tape`` class of the runtime module (built and imported if it is not yet)."""
    return _runtime_module().Tape


def buffers_ok():
    """The compiled check of a call's arrays (:mod:`adsrc.runtime.compiled_call_check`)."""
    return _runtime_module().buffers_ok


@contextlib.contextmanager
def _captured_output():
    """Capture what Cython and the C compiler print, at the file-descriptor level (the
    compiler is a child process): shown only if the build fails.

    The redirection is process-wide, so captures are serialised: a second thread waits here
    until the first has restored the process's output."""
    with _BUILD_LOCK, _redirected_output() as text:
        yield text


@contextlib.contextmanager
def _redirected_output():
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+", errors="replace") as sink:
        saved = os.dup(1), os.dup(2)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        text = io.StringIO()
        try:
            with contextlib.redirect_stderr(text), contextlib.redirect_stdout(text):
                yield text
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            text.write(sink.read())


def _build(directory, extensions, shared, lighter_glue=False):
    """Cythonize and compile ``extensions`` in ``directory``; ``lighter_glue``: compile their
    Cython glue with less optimisation (generated modules, not the support modules)."""
    from Cython.Build import cythonize
    from setuptools import Distribution
    from setuptools.command.build_ext import build_ext

    with _captured_output() as output:
        try:
            modules = cythonize(extensions, quiet=True, force=True,
                                shared_utility_qualified_name=shared, build_dir=directory)
            if lighter_glue:
                for module in modules:
                    for path in module.sources:
                        _rewrite(path, glue.lighter_glue)
            distribution = Distribution({"ext_modules": modules})
            command = build_ext(distribution)
            command.build_lib = directory
            command.build_temp = os.path.join(directory, "tmp")
            command.ensure_finalized()
            command.run()
            failure = None
        except (Exception, SystemExit) as exc:      # Cython: CompileError; setuptools: SystemExit
            failure = exc
    if failure is not None:
        raise _BuildFailed(output.getvalue() or str(failure))


class _BuildFailed(Exception):
    pass


def _import(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]           # not a half-initialised module for the next call
        raise
    return module


def _ensure_support(directory):
    """Build (once) and import what every generated module needs: the shared Cython utility
    module, then adsrc's runtime module (built with the former).  Returns the shared module's
    name."""
    shared, runtime = _shared_name(), runtime_module_name()
    with _BUILD_LOCK:
        if shared not in sys.modules:
            _find_or_build_support(directory, shared, shared, {}, "Cython's shared utility module")
        if runtime not in sys.modules:
            files = {runtime + suffix: text for suffix, text in _runtime_sources().items()}
            _find_or_build_support(directory, runtime, shared, files, "adsrc's runtime module")
    return shared


def _find_or_build_support(directory, name, shared, files, what):
    """Import the support module ``name``, building it first if the cache has no usable build.
    ``files``: its sources, {file name: text}; none for the shared utility module, whose C
    Cython writes itself."""
    def build(work, final):
        from setuptools import Extension       # imported only to build: 0.1-0.5 s

        for filename, text in files.items():
            _write(os.path.join(work, filename), text)
        source = os.path.join(work, name + (".pyx" if files else ".c"))
        try:
            _build(work, [Extension(name, [source], extra_compile_args=FLAGS)], shared)
        except _BuildFailed as exc:
            raise AdsrcError(f"adsrc: building {what} failed:\n{exc}") from None
        cache.publish(os.path.join(work, name + cache.extension_suffix()), final)

    _imported_or_built(directory, name, build)


def _imported_or_built(directory, name, build):
    """The module ``name`` from the cache ``directory``, imported; when the cache has no usable
    build of it, ``build(work, final)`` first writes one to the path ``final``, working in the
    new temporary directory ``work`` (removed after).  Under the cache's lock on ``name``,
    looking again once the lock is held: another process may have built it meanwhile."""
    final = os.path.join(directory, name + cache.extension_suffix())
    module = _imported(name, final)
    if module is not None:
        return module
    with cache.build_lock(directory, name):
        module = _imported(name, final)
        if module is None:
            work = tempfile.mkdtemp(prefix="build-", dir=directory)
            try:
                build(work, final)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            module = _import(name, final)
    return module


def _rewrite(path, change):
    with open(path) as handle:
        text = handle.read()
    _write(path, change(text))


def _write(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def _imported(name, path):
    """The module built at ``path``, imported; None when there is no file or it cannot be
    imported (truncated or corrupt): the caller then builds it again, and the build's atomic
    rename replaces the bad file."""
    if not os.path.exists(path) or cache.truncated(path):
        return None
    try:
        return _import(name, path)
    except ImportError:
        return None


def load(source, name_hint, line_map=None):
    """Compile (or find in the cache) a generated ``.pyx`` source and import it."""
    directory = cache.cache_dir()
    shared = _ensure_support(directory)
    name = f"adsrc_{name_hint}_{cache.key(source, keyed_flags())}"
    with _BUILD_LOCK:           # a second thread wanting the same module waits and imports it
        if name in sys.modules:
            return sys.modules[name]
        return _find_or_build(directory, name, source, shared, line_map, compile_flags())


def load_built(name):
    """The module ``name`` (a name :func:`load` gave) if the cache holds a usable build of it,
    imported; else None.  Never builds it (only the shared utility and runtime modules, if
    missing)."""
    directory = cache.cache_dir()
    _ensure_support(directory)
    with _BUILD_LOCK:
        if name in sys.modules:
            return sys.modules[name]
        return _imported(name, os.path.join(directory, name + cache.extension_suffix()))


def _find_or_build(directory, name, source, shared, line_map, flags):
    def build(work, final):
        from setuptools import Extension

        pyx = os.path.join(work, name + ".pyx")
        _write(pyx, source)
        # the runtime module's declarations (the tape's), beside the .pyx that cimports them
        _write(os.path.join(work, runtime_module_name() + ".pxd"), _runtime_sources()[".pxd"])
        try:
            _build(work, [Extension(name, [pyx], extra_compile_args=flags)], shared,
                   lighter_glue=True)
        except _BuildFailed as exc:
            raise AdsrcError(_located(str(exc), line_map)) from None
        cache.publish(pyx, os.path.join(directory, name + ".pyx"))     # for reading
        cache.publish(os.path.join(work, name + cache.extension_suffix()), final)

    return _imported_or_built(directory, name, build)


def _located(message, line_map):
    """Prefix a build failure with the user's file and line, when a generated line is named."""
    match = re.search(r"\.pyx:(\d+):(\d+): (.*)", message)
    if match and line_map:
        origin = line_map.get(int(match.group(1)))
        if origin:
            filename, line = origin
            return (f"{filename}:{line}:1: error: the Cython build of the generated code failed "
                    f"here: {match.group(3)}\n{message}")
    return f"adsrc: the Cython build of the generated code failed:\n{message}"
