"""The compiled adjoints shipped in kernels/generated/ (built by setup.py from kernels/build.py).

The committed ``.pyx`` files must be exactly what adsrc generates today, and the compiled modules
must give the gradients the run-time transformation gives.
"""

import importlib
import os
import subprocess

import numpy as np
import pytest
from corpus.hand_adjoints import CASES

import adsrc
from adsrc.kernels import build


@pytest.fixture(scope="module")
def fresh():
    return build.generate_all()


def _committed(filename):
    """The text of kernels/generated/``filename`` in the checkout's last commit, or None
    outside a git checkout (an unpacked sdist)."""
    try:
        shown = subprocess.run(["git", "show", f"HEAD:kernels/generated/{filename}"],
                               cwd=build.GENERATED, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return shown.stdout


def test_committed_adjoints_are_up_to_date(fresh):
    """The files on disk are compared, and the committed ones where there is a git checkout:
    installing regenerates the files on disk (setup.py), so a fresh clone's test run compared
    the regenerated files with themselves, and a stale commit went unseen."""
    assert set(fresh) == {f"{name}_adjoint.pyx" for name in build.SHIPPED}
    for filename, source in fresh.items():
        path = os.path.join(build.GENERATED, filename)
        assert os.path.exists(path), f"{filename} is missing: run pip install -e ."
        with open(path) as handle:
            assert handle.read() == source, (f"kernels/generated/{filename} is stale: "
                                             "regenerate with pip install -e . and commit it")
        committed = _committed(filename)
        assert committed in (None, source), (f"kernels/generated/{filename} was regenerated "
                                             "but not committed: commit it")


def _case(kernel_name):
    return next(case for case in CASES if case.kernel.__name__ == kernel_name)


@pytest.mark.parametrize("name", sorted(build.SHIPPED))
def test_compiled_adjoint_matches_runtime_adjoint(name):
    module = importlib.import_module(f"adsrc.kernels.generated.{name}_adjoint")
    wrt, outputs, _ = build.SHIPPED[name]
    case = _case(name)
    rng = np.random.default_rng(7)
    args = case.make_args(rng, np.int32)
    kernel = adsrc.differentiate(case.kernel, wrt=wrt, outputs=outputs, backend="python")
    _, entry = kernel.specialise(adsrc.api.signature_of(name, kernel.params, args))
    seeds = {out: rng.standard_normal(args[kernel.params.index(out)].shape) for out in outputs}

    def copies():
        return [a.copy() if isinstance(a, np.ndarray) else a for a in args]

    want = kernel.adjoint(*copies(), **{out + "_bar": seed.copy() for out, seed in seeds.items()})

    values = copies()
    bars = [seeds[p].copy() if p in seeds else np.zeros_like(values[kernel.params.index(p)])
            for p in entry.bar_params]
    tape = module.Tape()
    getattr(module, f"{name}__fwd")(*values, tape)
    scalars = getattr(module, f"{name}__rev")(*values, *bars, tape)
    assert tape.empty()
    got = dict(zip(entry.bar_params, bars))
    got.update(zip(entry.scalar_bar_params, scalars or ()))
    for param, expected in zip(wrt, want):
        np.testing.assert_allclose(got[param], expected, rtol=1e-12, atol=1e-14,
                                   err_msg=f"{name}: adjoint of {param}")

    primal = copies()
    getattr(module, f"{name}__primal")(*primal)
    reference = copies()
    case.kernel(*reference)
    for a, b in zip(primal, reference):
        if isinstance(a, np.ndarray):
            np.testing.assert_allclose(a, b, rtol=1e-14, atol=0)
