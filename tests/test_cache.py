"""The source key (``adsrc/compiling/source_key.py``): a compiled module found in the cache
without running the pipeline, and never a stale one.

A new process differentiating the same kernel loads its module without fencing anything; an
edited kernel, a changed module constant, an edited callee in another file and a new argument
signature each miss the key and give the derivatives of the new code; a corrupt or missing
record or module file is rebuilt.  The kernels live in files written here, so that a test can
edit them between processes.  Each process reports how often the fence ran and how many Cython
builds it made (counters patched into it), and its derivatives, which are checked against the
closed form: y = scale * x**2 + c * x, so x_bar = 2 * scale * x + c for y_bar = 1.
"""

import glob
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp

import adsrc
from adsrc.compiling.cache import ENVIRONMENT_VARIABLE, cache_dir
from adsrc.compiling.cython_build import FLAGS_VARIABLE

_CC = (sysconfig.get_config_var("CC") or "cc").split()[0]
pytestmark = pytest.mark.skipif(not (shutil.which(_CC) or shutil.which("cc")),
                                reason="the Cython backend needs a C compiler")

X = np.array([1.0, 2.0, 3.0])

CALLEE = """
SCALE = {scale}


def square(x, y):
    for i in range(len(x)):
        y[i] = SCALE * x[i] * x[i]
"""

KERNEL = """
from {callee} import square


def kernel(x, y, c):
    square(x, y)
    for i in range(len(y)):
        y[i] = y[i] + c * x[i]
"""

# one differentiation and adjoint call, counting the fence's runs and the Cython builds
_PROCESS = textwrap.dedent("""
    import importlib, json, sys
    import numpy as np
    import adsrc
    from adsrc.compiling import cython_build, source_key
    from adsrc.frontend.fence import Fence
    from adsrc.pipeline import Generator

    counts = {"fence": 0, "builds": 0, "generated": 0}

    def counting(name, function):
        def counted(*args, **kwargs):
            counts[name] += 1
            return function(*args, **kwargs)
        return counted

    def counted_build(directory, extensions, shared, **options):
        # kernel modules only (not the shared utility and runtime modules, built once per cache)
        counts["builds"] += extensions[0].name.startswith("adsrc_")
        return build(directory, extensions, shared, **options)

    Fence.run = counting("fence", Fence.run)
    Generator.module = counting("generated", Generator.module)
    # adsrc's own code, hashed into the key, is the same in every process of a test (a file
    # saved while the suite runs is a miss, rightly, but not what these tests are about)
    source_key._generator_tag = lambda: "adsrc under test"
    build, cython_build._build = cython_build._build, counted_build
    sys.path.insert(0, sys.argv[1])
    for name in sys.argv[3:]:          # modules the user's program imported before
        importlib.import_module(name)
    from cache_kernel import kernel
    c = json.loads(sys.argv[2])
    x, y = np.array([1.0, 2.0, 3.0]), np.zeros(3)
    f = adsrc.differentiate(kernel, wrt="x", outputs="y", backend="cython")
    (x_bar,) = f.adjoint(x, y, c, y_bar=np.ones(3))
    modules = [sys.modules[compiled.forward.__module__].__file__
               for compiled in f._compiled.values()]      # none for a checkpointed loop
    module = modules[0] if modules else None
    scipy = any(name.split(".")[0] == "scipy" for name in sys.modules)
    print(json.dumps({"x_bar": x_bar.tolist(), "y": y.tolist(), "module": module, "scipy": scipy,
                      "sparse_linalg": "scipy.sparse.linalg" in sys.modules, **counts}))
""")


def _write(directory, scale=2.0, callee_body=None, kernel_text=KERNEL):
    callee = CALLEE.format(scale=scale)
    if callee_body is not None:
        callee = callee.replace("SCALE * x[i] * x[i]", callee_body)
    (directory / "cache_callee.py").write_text(callee)
    (directory / "cache_kernel.py").write_text(kernel_text.format(callee="cache_callee"))


def _process(directory, c, cflags=None, imported=()):
    """One new process (with ``$ADSRC_CFLAGS`` set to ``cflags``, else the session's flags,
    and the modules ``imported`` imported before the kernel), finished."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")      # an edited file is read again
    env[ENVIRONMENT_VARIABLE] = cache_dir()
    if cflags is not None:
        env[FLAGS_VARIABLE] = cflags
    return subprocess.run([sys.executable, "-c", _PROCESS, str(directory), json.dumps(c),
                           *imported],
                          capture_output=True, text=True, env=env, timeout=300)


def _run(directory, c, cflags=None, imported=()):
    """One new process: its derivatives, its module file and its fence and build counts."""
    result = _process(directory, c, cflags, imported)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def _check(run, y, x_bar):
    np.testing.assert_allclose(run["y"], y, rtol=1e-14)
    np.testing.assert_allclose(run["x_bar"], x_bar, rtol=1e-14)


def _records_of(module_file):
    """The source-key records naming the module built at ``module_file``."""
    name = os.path.basename(module_file).split(".")[0]
    found = []
    for path in glob.glob(os.path.join(cache_dir(), "keys", "*.pickle")):
        with open(path, "rb") as handle:
            if pickle.load(handle)["module"] == name:
                found.append(path)
    return found


def test_a_new_process_loads_by_the_source_key_without_the_pipeline(tmp_path):
    _write(tmp_path)
    first = _run(tmp_path, 0.5)
    _check(first, 2.0 * X**2 + 0.5 * X, 4.0 * X + 0.5)
    assert first["fence"] >= 2 and first["builds"] == 1       # the kernel and its callee
    again = _run(tmp_path, 0.5)
    _check(again, 2.0 * X**2 + 0.5 * X, 4.0 * X + 0.5)
    assert again["fence"] == 0 and again["builds"] == 0
    assert again["module"] == first["module"]
    # a kernel that calls no SciPy function never imports SciPy (which takes about as long to
    # import as adsrc): not when it is built, not when it is found by its key
    assert not first["scipy"] and not again["scipy"]


def test_a_program_using_scipy_sparse_loads_no_more_of_scipy_for_a_kernel_calling_a_helper(
        tmp_path):
    """The fence asks whether each called global is one of SciPy's sparse functions it
    rewrites; with ``scipy.sparse`` imported by the user's program it must not import
    ``scipy.sparse.linalg`` to answer (about 0.1 s, twice a cache hit's whole cost)."""
    _write(tmp_path)
    for _ in range(2):          # built, then found by its key
        run = _run(tmp_path, 0.5, imported=["scipy.sparse"])
        _check(run, 2.0 * X**2 + 0.5 * X, 4.0 * X + 0.5)
        assert not run["sparse_linalg"]


CHECKPOINTED_KERNEL = """
import adsrc


def kernel(x, y, c):
    for it in adsrc.checkpointed(range(2), snapshots=1):
        for i in range(len(x)):
            y[i] = y[i] * y[i] + c * x[i]
"""


def test_a_checkpointed_loop_is_found_by_the_source_key_in_a_new_process(tmp_path):
    """The loop's step is a kernel adsrc derives from the user's, with no file of its own: its
    key describes it by the user's kernel and its tree.  From y = 0, two steps of
    y = y * y + c * x give c^2 x^2 + c x; edited to y * y * y, c^3 x^3 + c x."""
    _write(tmp_path, kernel_text=CHECKPOINTED_KERNEL)
    first = _run(tmp_path, 0.5)
    _check(first, 0.25 * X**2 + 0.5 * X, 0.5 * X + 0.5)
    assert first["generated"] == 1 and first["builds"] == 1
    again = _run(tmp_path, 0.5)
    _check(again, 0.25 * X**2 + 0.5 * X, 0.5 * X + 0.5)
    assert again["generated"] == 0 and again["builds"] == 0
    _write(tmp_path, kernel_text=CHECKPOINTED_KERNEL.replace("y[i] * y[i]", "y[i] * y[i] * y[i]"))
    edited = _run(tmp_path, 0.5)
    _check(edited, 0.125 * X**3 + 0.5 * X, 0.375 * X**2 + 0.5)
    assert edited["generated"] == 1 and edited["builds"] == 1


@pytest.mark.parametrize("change, c, y, x_bar", [
    # the callee's module constant (the fence inlines it), in a file the kernel's imports from
    ("constant", 0.5, 3.0 * X**2 + 0.5 * X, 6.0 * X + 0.5),
    ("callee", 0.5, 2.0 * X**3 + 0.5 * X, 6.0 * X**2 + 0.5),
    ("kernel", 0.5, 2.0 * X**2 + 0.5 * X**2, 4.0 * X + X),
    ("signature", 3, 2.0 * X**2 + 3 * X, 4.0 * X + 3),       # c an int, not a float
])
def test_a_change_misses_the_source_key_and_builds_the_new_code(tmp_path, change, c, y, x_bar):
    _write(tmp_path)
    base = _run(tmp_path, 0.5)
    if change == "constant":
        _write(tmp_path, scale=3.0)
    elif change == "callee":
        _write(tmp_path, callee_body="SCALE * x[i] * x[i] * x[i]")
    elif change == "kernel":
        _write(tmp_path, kernel_text=KERNEL.replace("c * x[i]", "c * x[i] * x[i]"))
    changed = _run(tmp_path, c)
    _check(changed, y, x_bar)
    assert changed["fence"] >= 2 and changed["builds"] == 1
    assert changed["module"] != base["module"]
    again = _run(tmp_path, c)       # and the new code is found by its own source key
    _check(again, y, x_bar)
    assert again["fence"] == 0 and again["builds"] == 0


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_module_file_is_rebuilt(tmp_path, damage):
    """A file that is no shared library fails to import; one cut short killed the process
    that loaded it (SIGBUS), and every later one, until the cache was cleared by hand."""
    _write(tmp_path)
    first = _run(tmp_path, 0.5)
    with open(first["module"], "rb") as handle:
        whole = handle.read()
    with open(first["module"], "wb") as handle:
        handle.write(b"not a shared library" if damage == "garbage" else whole[:len(whole) // 2])
    rebuilt = _run(tmp_path, 0.5)
    _check(rebuilt, 2.0 * X**2 + 0.5 * X, 4.0 * X + 0.5)
    assert rebuilt["builds"] == 1 and rebuilt["module"] == first["module"]
    assert _run(tmp_path, 0.5)["builds"] == 0


def test_a_missing_module_file_is_rebuilt(tmp_path):
    _write(tmp_path)
    first = _run(tmp_path, 0.5)
    os.remove(first["module"])
    rebuilt = _run(tmp_path, 0.5)
    _check(rebuilt, 2.0 * X**2 + 0.5 * X, 4.0 * X + 0.5)
    assert rebuilt["builds"] == 1 and os.path.exists(first["module"])


def test_extra_compiler_flags_build_their_own_module(tmp_path):
    """$ADSRC_CFLAGS is part of both keys: the same kernel under other flags is a miss, built
    once, then a hit; without them again, the first module is found."""
    _write(tmp_path)
    plain = _run(tmp_path, 0.5)
    aligned = _run(tmp_path, 0.5, cflags="-falign-loops=32 -falign-functions=64")
    _check(aligned, 2.0 * X**2 + 0.5 * X, 4.0 * X + 0.5)
    assert aligned["builds"] == 1 and aligned["module"] != plain["module"]
    again = _run(tmp_path, 0.5, cflags="-falign-loops=32 -falign-functions=64")
    assert again["builds"] == 0 and again["fence"] == 0 and again["module"] == aligned["module"]
    back = _run(tmp_path, 0.5)
    assert back["builds"] == 0 and back["module"] == plain["module"]


def test_extra_compiler_flags_reach_the_compiler(tmp_path):
    """A flag the C compiler refuses fails the build, with the compiler's message: the flags
    are passed, not only hashed."""
    _write(tmp_path)
    result = _process(tmp_path, 0.5, cflags="-fno-such-adsrc-option")
    assert result.returncode != 0
    assert "the Cython build of the generated code failed" in result.stderr
    assert "no-such-adsrc-option" in result.stderr


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_damaged_record_runs_the_pipeline_once_and_is_rewritten(tmp_path, damage):
    _write(tmp_path)
    first = _run(tmp_path, 0.5)
    (record,) = _records_of(first["module"])
    if damage == "corrupt":
        with open(record, "wb") as handle:
            handle.write(b"\x80\x05 truncated")
    else:
        os.remove(record)
    second = _run(tmp_path, 0.5)
    _check(second, 2.0 * X**2 + 0.5 * X, 4.0 * X + 0.5)
    assert second["fence"] >= 2 and second["builds"] == 0     # the module itself was fine
    assert _records_of(first["module"]) == [record]
    assert _run(tmp_path, 0.5)["fence"] == 0


def test_a_constant_changed_in_process_is_fenced_again_for_a_new_signature(tmp_path,
                                                                           monkeypatch):
    """A Differentiable that already compiled a signature fences the kernel again for the
    next one: else the source key, describing the new constant, would record a module
    generated with the old one, and a fresh object would load it."""
    directory = tmp_path / "inprocess"
    directory.mkdir()
    (directory / "cache_callee_inprocess.py").write_text(CALLEE.format(scale=2.0))
    (directory / "cache_kernel_inprocess.py").write_text(
        KERNEL.format(callee="cache_callee_inprocess"))
    monkeypatch.syspath_prepend(str(directory))
    import cache_callee_inprocess
    import cache_kernel_inprocess

    def x_bar(f, c):
        (result,) = f.adjoint(X.copy(), np.zeros(3), c, y_bar=np.ones(3))
        return result

    f = adsrc.differentiate(cache_kernel_inprocess.kernel, wrt="x", outputs="y",
                            backend="cython")
    np.testing.assert_allclose(x_bar(f, 2), 4.0 * X + 2, rtol=1e-14)
    monkeypatch.setattr(cache_callee_inprocess, "SCALE", 3.0)
    np.testing.assert_allclose(x_bar(f, 0.5), 6.0 * X + 0.5, rtol=1e-14)
    fresh = adsrc.differentiate(cache_kernel_inprocess.kernel, wrt="x", outputs="y",
                                backend="cython")
    np.testing.assert_allclose(x_bar(fresh, 0.5), 6.0 * X + 0.5, rtol=1e-14)
    np.testing.assert_allclose(x_bar(fresh, 2), 6.0 * X + 2, rtol=1e-14)


CHANGING = """
import adsrc

SCALE = 2.0


def square(x, y):
    for i in range(len(x)):
        y[i] = SCALE * x[i] * x[i]


def cube(x, y):
    for i in range(len(x)):
        y[i] = x[i] * x[i] * x[i]


def kernel(x, y, c):
    square(x, y)
    for i in range(len(y)):
        y[i] = y[i] + c * x[i]


def scaled_steps(x, steps):
    for it in adsrc.checkpointed(range(steps), SCHEDULE):
        for i in range(len(x)):
            x[i] = SCALE * x[i]
"""


@pytest.mark.parametrize("backend", ["python", "cython"])
def test_a_constant_or_callee_changed_in_process_is_seen_by_the_same_signature(
        tmp_path, monkeypatch, backend):
    """A Differentiable keeps its compiled modules only while the module constants and the
    callees they were made from are the same objects: a change is generated again, for the
    adjoint, the primal and the tangent alike, and for the step of a checkpointed loop."""
    # a loop reversed one step at a time by the step's adjoint, and one taped whole, by the
    # variant of the step's adjoint that puts back what it overwrites
    (tmp_path / "changing_kernels.py").write_text(
        CHANGING.replace("SCHEDULE", "schedule='binomial', snapshots=1"))
    (tmp_path / "changing_stored.py").write_text(
        CHANGING.replace("SCHEDULE", "schedule='store_all'"))
    monkeypatch.syspath_prepend(str(tmp_path))
    import changing_kernels
    import changing_stored

    f = adsrc.differentiate(changing_kernels.kernel, wrt="x", outputs="y", backend=backend)

    def x_bar():
        (result,) = f.adjoint(X.copy(), np.zeros(3), 0.5, y_bar=np.ones(3))
        return result

    np.testing.assert_allclose(x_bar(), 4.0 * X + 0.5, rtol=1e-14)
    monkeypatch.setattr(changing_kernels, "SCALE", 3.0)
    np.testing.assert_allclose(x_bar(), 6.0 * X + 0.5, rtol=1e-14)
    y = np.zeros(3)
    f.primal(X.copy(), y, 0.5)
    np.testing.assert_allclose(y, 3.0 * X**2 + 0.5 * X, rtol=1e-14)
    (y_dot,) = f.tangent(X.copy(), np.zeros(3), 0.5, x_dot=np.ones(3))
    np.testing.assert_allclose(y_dot, 6.0 * X + 0.5, rtol=1e-14)
    monkeypatch.setattr(changing_kernels, "square", changing_kernels.cube)
    np.testing.assert_allclose(x_bar(), 3.0 * X**2 + 0.5, rtol=1e-14)
    for module in (changing_kernels, changing_stored):
        loop = adsrc.differentiate(module.scaled_steps, wrt="x", outputs="x", backend=backend)
        (gradient,) = loop.adjoint(X.copy(), 3, x_bar=np.ones(3))
        np.testing.assert_allclose(gradient, np.full(3, module.SCALE ** 3), rtol=1e-14)
        monkeypatch.setattr(module, "SCALE", 0.5)
        (gradient,) = loop.adjoint(X.copy(), 3, x_bar=np.ones(3))
        np.testing.assert_allclose(gradient, np.full(3, 0.125), rtol=1e-14)


RULE_KERNEL = """
import numpy as np
import scipy.sparse as sp

WEIGHT = 2.0


def helper(v):
    return float(np.sum(v))


def kernel(x, y, c):
    y[0] = WEIGHT * helper(x) + c
"""


def test_the_key_follows_derivative_rules_and_gives_up_on_what_it_cannot_describe(
        tmp_path, monkeypatch):
    """No compilation: the key's value itself.  Registering a rule for a function the kernel
    calls, or changing it, changes the key (the generated code calls the rule by name and types
    its result by it); a global the fence would reject (an array) leaves no key at all."""
    (tmp_path / "cache_rule_kernel.py").write_text(RULE_KERNEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    import cache_rule_kernel as module
    from adsrc.compiling.source_key import SourceKey
    from adsrc.runtime.arguments import signature_of

    signature = signature_of("kernel", ["x", "y", "c"], (X, np.zeros(3), 0.5))

    def key(backend="cython"):
        return SourceKey(module.kernel, ("x",), ("y",), signature, backend, "adjoint").value

    keys = [key()]
    for returns in ("float", "float64[:]"):
        @adsrc.rule(module.helper, returns=returns)
        def forward(v):
            return module.helper(v), ()
        keys.append(key())
    monkeypatch.setattr(module, "WEIGHT", 3.0)
    keys.append(key())
    assert None not in keys and len(set(keys)) == 4
    assert key() == keys[-1]                            # the same inputs, the same key
    monkeypatch.setattr(module, "WEIGHT", np.ones(3))
    assert key() is None
    monkeypatch.setattr(module, "WEIGHT", 3.0)
    assert key("python") is None                        # only compiled modules are cached


def test_kernels_in_scipy_sparse_spelling_get_a_key():
    """``csr_matrix`` and ``spsolve`` are rewritten by the fence (their meaning is adsrc's), so
    a kernel naming them is found by its key like any other."""
    from adsrc.compiling.source_key import SourceKey
    from adsrc.runtime.arguments import signature_of
    from tests import rule_kernels

    matrix = sp.diags([-1.0, 2.5, -1.0], [-1, 0, 1], shape=(4, 4), format="csr")
    args = (matrix.data, matrix.indices, matrix.indptr, np.ones(4), np.ones(4), np.zeros(4),
            np.zeros(4))
    params = ["data", "indices", "indptr", "x", "f", "y", "u"]
    signature = signature_of("scipy_spelling", params, args)
    key = SourceKey(rule_kernels.scipy_spelling, ("data",), ("return",), signature, "cython",
                    "adjoint").value
    assert key is not None


def test_a_signature_pickled_in_one_process_is_found_in_another():
    """Types cache their hash; a string's hash differs between processes (PYTHONHASHSEED), so
    a signature the source-key cache pickled must hash as the other process's own Types do."""
    from adsrc.runtime.arguments import signature_of

    signature = signature_of("kernel", ["x", "i", "c"], (np.zeros(3), np.zeros(2, np.int32), 0.5))
    check = textwrap.dedent("""
        import pickle, sys
        import numpy as np
        from adsrc.runtime.arguments import signature_of
        loaded = pickle.loads(bytes.fromhex(sys.argv[1]))
        fresh = signature_of("kernel", ["x", "i", "c"],
                             (np.zeros(3), np.zeros(2, np.int32), 0.5))
        print({fresh: "found"}.get(loaded, "missing"))
        """)
    for seed in ("1", "2"):
        done = subprocess.run([sys.executable, "-c", check, pickle.dumps(signature).hex()],
                              env={**os.environ, "PYTHONHASHSEED": seed},
                              capture_output=True, text=True, check=True)
        assert done.stdout.strip() == "found"


def test_a_cache_directory_that_is_a_file_is_named_in_the_error(tmp_path, monkeypatch):
    """$ADSRC_CACHE_DIR naming a file: a FileExistsError from os.makedirs, which did not say
    the setting was the trouble."""
    _write(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    from cache_kernel import kernel
    monkeypatch.setitem(sys.modules, "cache_kernel", sys.modules["cache_kernel"])  # undone after
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("")
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, str(not_a_directory))
    y = np.zeros(3)
    with pytest.raises(adsrc.AdsrcError, match=re.escape(
            f"adsrc cannot use {not_a_directory} ($ADSRC_CACHE_DIR) as its cache")):
        adsrc.differentiate(kernel, wrt="x", outputs="y", backend="cython").adjoint(
            X.copy(), y, 0.5, y_bar=np.ones(3))
    np.testing.assert_array_equal(y, np.zeros(3))
