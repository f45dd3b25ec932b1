"""Building a generated ``.pyx`` into an extension module, in-process.

Cython's ``cythonize`` and setuptools' ``build_ext`` run in a private temporary directory inside
the cache; the finished ``.so`` is renamed into the cache.  All modules share one Cython utility
module (Cython >= 3.1), built once per toolchain, so a kernel compiles in well under a second
instead of several.  A failed build raises :class:`~adsrc.errors.AdsrcError` naming the user's
kernel file and line when the failure can be traced to a generated line.
"""

import contextlib
import importlib.util
import io
import os
import re
import shutil
import sys
import tempfile

from adsrc.compiling import cache
from adsrc.errors import AdsrcError

FLAGS = ["-O3", "-fno-strict-aliasing"]


def _shared_name():
    return "_adsrc_cyutility_" + cache.key("shared utility module", FLAGS)[:12]


@contextlib.contextmanager
def _captured_output():
    """Capture what Cython and the C compiler print, at the file-descriptor level (the
    compiler is a child process): shown only if the build fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+") as sink:
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


def _build(directory, extensions, shared):
    from Cython.Build import cythonize
    from setuptools import Distribution
    from setuptools.command.build_ext import build_ext

    with _captured_output() as output:
        try:
            modules = cythonize(extensions, quiet=True, force=True,
                                shared_utility_qualified_name=shared, build_dir=directory)
            distribution = Distribution({"ext_modules": modules})
            command = build_ext(distribution)
            command.build_lib = directory
            command.build_temp = os.path.join(directory, "tmp")
            command.ensure_finalized()
            command.run()
            failure = None
        except BaseException as exc:        # Cython raises CompileError, setuptools SystemExit
            failure = exc
    if failure is not None:
        raise _BuildFailed(output.getvalue() or str(failure))


class _BuildFailed(Exception):
    pass


def _import(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _ensure_shared(directory):
    """Build (once) and import the shared Cython utility module."""
    from setuptools import Extension

    name = _shared_name()
    if name in sys.modules:
        return name
    final = os.path.join(directory, name + cache.extension_suffix())
    if not os.path.exists(final):
        work = tempfile.mkdtemp(prefix="build-", dir=directory)
        try:
            _build(work, [Extension(name, [os.path.join(work, name + ".c")])], name)
            cache.publish(os.path.join(work, name + cache.extension_suffix()), final)
        except _BuildFailed as exc:
            raise AdsrcError(f"adsrc: building Cython's shared utility module failed:\n{exc}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    _import(name, final)
    return name


def load(source, name_hint, line_map=None):
    """Compile (or find in the cache) a generated ``.pyx`` source and import it."""
    from setuptools import Extension

    directory = cache.cache_dir()
    shared = _ensure_shared(directory)
    name = f"adsrc_{name_hint}_{cache.key(source, FLAGS)}"
    if name in sys.modules:
        return sys.modules[name]
    final = os.path.join(directory, name + cache.extension_suffix())
    if not os.path.exists(final):
        work = tempfile.mkdtemp(prefix="build-", dir=directory)
        try:
            pyx = os.path.join(work, name + ".pyx")
            with open(pyx, "w") as handle:
                handle.write(source)
            _build(work, [Extension(name, [pyx], extra_compile_args=FLAGS)], shared)
            with open(pyx) as handle, open(os.path.join(directory, name + ".pyx"), "w") as out:
                out.write(handle.read())
            cache.publish(os.path.join(work, name + cache.extension_suffix()), final)
        except _BuildFailed as exc:
            raise AdsrcError(_located(str(exc), line_map)) from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return _import(name, final)


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
