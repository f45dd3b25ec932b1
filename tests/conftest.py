"""Shared test configuration.

Compiled modules go to a cache directory private to the test session, so a run starts cold
and never touches the user's cache.  pytest-xdist's workers (``-n auto`` in pyproject.toml) are
sessions of their own, each with its own cache.  Test modules that apply the ``backend`` fixture (via
``pytestmark = pytest.mark.usefixtures("backend")``) run once per backend: the Python backend is
the reference, the Cython backend must give the same results.
"""

import pytest

from adsrc.api import BACKEND_VARIABLE
from adsrc.compiling.cache import ENVIRONMENT_VARIABLE


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setenv(ENVIRONMENT_VARIABLE, str(tmp_path_factory.mktemp("adsrc-cache")))
    yield
    patch.undo()


@pytest.fixture(params=["python", "cython"])
def backend(request, monkeypatch):
    monkeypatch.setenv(BACKEND_VARIABLE, request.param)
    return request.param
