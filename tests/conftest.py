"""Shared test configuration.

Compiled modules go to one cache directory per test session, shared by all of the session's
processes: pytest-xdist's workers (``-n auto`` in pyproject.toml) and the subprocesses tests
start.  It lives in the session's temporary directory, so a run starts cold and never touches
the user's cache, and a kernel that test files on two workers use is compiled once, not once
per worker: two workers that want the same module at the same time take the cache's lock on it
(adsrc/compiling/cache.py), and one builds it while the other waits.  A test that asserts on the
whole content of the cache directory, which another worker may write to at any moment, is
marked ``private_cache`` and gets a cache of its own (see ``_PRIVATE_CACHE_TESTS``).

The session's modules are built at ``-O0`` (``$ADSRC_CFLAGS``, unless the user set it).  Builds
take most of the suite's time, and gcc, most of a build, takes about a quarter as long at -O0 as
at -O3 (2.2 s -> 0.54 s for a Jacobi adjoint; the whole suite on 2 cores took 11:15 with -O1,
8:55 with -O0 for every test); the C code is the same, and gcc's optimisation level changes no
result of C code without undefined behaviour.  To catch code that has some, the tests marked
``shipping_flags`` (the corpus, the Cython backend's own tests) build with adsrc's flags alone,
as users' modules and the shipped kernels are built.

Test modules that apply the ``backend`` fixture (via
``pytestmark = pytest.mark.usefixtures("backend")``) run once per backend: the Python backend is
the reference, the Cython backend must give the same results.
"""

import os
import shutil
import sys

import pytest

from adsrc.api import BACKEND_VARIABLE
from adsrc.compiling.cache import ENVIRONMENT_VARIABLE
from adsrc.compiling.cython_build import FLAGS_VARIABLE

# (file, test function) of tests that assert on everything in the cache directory (which
# modules were built, which files changed) and so need a cache no other process writes to;
# a new such test can say so itself with @pytest.mark.private_cache
_PRIVATE_CACHE_TESTS = {
    ("test_cython_backend.py", "test_cache_reuses_modules_and_builds_new_signatures"),
}

# (file, test function) of tests that take a minute or more alone (a hundred hypothesis
# examples each): they are collected first, so that a worker starts with them while the other
# works through the rest, instead of one running alone at the end of the session
_LONG_TESTS = {
    ("test_random_kernels.py", "test_random_kernel_gradients"),
    ("test_random_kernels.py", "test_random_kernel_gradients_cython"),
}

# the modules every generated module needs, built once per cache: Cython's shared utility
# module and adsrc's runtime module (adsrc/compiling/cython_build.py)
_SUPPORT_MODULE_PREFIXES = ("_adsrc_cyutility_", "_adsrc_runtime_")


# the C flags the session's builds add to adsrc's own (see the module docstring)
_TEST_FLAGS = "-O0"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "private_cache: the test gets a compile cache of its own, holding only "
                   "Cython's shared utility module and adsrc's runtime module (it asserts on the "
                   "whole cache directory)")
    config.addinivalue_line(
        "markers", "shipping_flags: the test's modules are built with adsrc's own C flags, "
                   "not the session's quicker -O0")


def _file_and_function(item):
    return item.path.name, getattr(item, "originalname", item.name)


def pytest_collection_modifyitems(items):
    for item in items:
        if _file_and_function(item) in _PRIVATE_CACHE_TESTS:
            item.add_marker(pytest.mark.private_cache)
    items.sort(key=lambda item: _file_and_function(item) not in _LONG_TESTS)    # stable


def _session_directory(tmp_path_factory):
    """A directory of this test session, the same for all of its xdist workers."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return tmp_path_factory.getbasetemp()       # not under xdist: this process is the session
    # an xdist worker's base temporary directory is <the session's>/popen-gwN (xdist passes it
    # as --basetemp): new for each session, like the session's own
    return tmp_path_factory.getbasetemp().parent


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    path = _session_directory(tmp_path_factory) / "adsrc-cache"
    path.mkdir(exist_ok=True)
    patch = pytest.MonkeyPatch()
    patch.setenv(ENVIRONMENT_VARIABLE, str(path))
    if FLAGS_VARIABLE not in os.environ:
        patch.setenv(FLAGS_VARIABLE, _TEST_FLAGS)
    yield path
    patch.undo()


@pytest.fixture(autouse=True)
def _shipping_flags_if_marked(request, monkeypatch):
    if request.node.get_closest_marker("shipping_flags") is not None \
            and os.environ.get(FLAGS_VARIABLE) == _TEST_FLAGS:
        monkeypatch.delenv(FLAGS_VARIABLE)


@pytest.fixture(autouse=True)
def _private_cache_if_marked(request, session_cache, tmp_path_factory, monkeypatch):
    if request.node.get_closest_marker("private_cache") is None:
        return
    own = tmp_path_factory.mktemp("adsrc-private-cache")
    # the support modules, as a per-worker cache had them: the ones this process has loaded (a
    # build in this process never writes them again), else the session's, if built
    sources = {module.__file__ for name, module in list(sys.modules.items())
               if name.startswith(_SUPPORT_MODULE_PREFIXES)}
    sources |= {os.path.join(session_cache, name) for name in os.listdir(session_cache)
                if name.startswith(_SUPPORT_MODULE_PREFIXES)}
    for source in sources:
        shutil.copy2(source, own / os.path.basename(source))
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, str(own))


@pytest.fixture(params=["python", "cython"])
def backend(request, monkeypatch):
    monkeypatch.setenv(BACKEND_VARIABLE, request.param)
    return request.param
