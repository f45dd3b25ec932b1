"""What an adjoint call costs outside its compiled code: adsrc's Python layer, on tiny grids.

    python benchmarks/overhead.py [--sizes 4,16] [--kernels spmv,sor] [--output OVERHEAD.md]

Why: a user who calls a kernel's adjoint inside a loop of their own (a learned smoother trained
on many small problems, a Newton step per element) pays, per call, what ``f.adjoint(...)`` does
around the compiled sweeps: type the arguments, find the compiled specialisation, check every
array (contiguity, dtype, shape, aliasing), make a tape and gather the gradients.  On a 4x4
grid the sweeps themselves take a few microseconds, so that layer is most of a call; RESULTS.md
measures large grids, where it vanishes.

For each kernel and grid, in the same process and timed in turn round after round
(``run.measure_in_turn``; each timed run is a batch of calls on arguments prepared before it):

* *sweeps*: the compiled module's forward and reverse sweeps called directly, on the tape
  ``f.adjoint`` would take (the last call's, handed back after the reverse sweep): what no
  Python layer can go below, reached through adsrc's private ``_compile`` and ``_checked``,
  which a user never calls;
* *f.adjoint*: the public call, the same sweeps inside;
* *Numba hand*: the hand-written ``@numba.njit`` adjoint of ``peers/numba_peer.py``, whose
  call includes Numba's own type dispatch;

and the same for the primal (the compiled primal directly, ``f.primal(...)``, Numba's primal).
*layer* = f.adjoint − sweeps (f.primal − compiled primal): the time per call spent in Python.

Once per process, before any call: ``import adsrc``, timed in new processes (adsrc's modules
compiled to bytecode first, as an installed package has them), and the import of SciPy's sparse
linear algebra after it, which adsrc makes only when a kernel or an argument uses SciPy.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import problems  # noqa: E402
import run  # noqa: E402
from peers import Case, hand  # noqa: E402

CALLS = 200         # calls per timed run: a run of 200 tiny calls is well above the timer's grain
IMPORTS = 7         # new processes timing the imports

_IMPORT_PROBE = """
import json, sys, time
start = time.perf_counter()
import adsrc
adsrc_seconds = time.perf_counter() - start
scipy_before = any(name.split(".")[0] == "scipy" for name in sys.modules)
start = time.perf_counter()
import scipy.sparse.linalg
print(json.dumps([adsrc_seconds, time.perf_counter() - start, scipy_before]))
"""


def import_times():
    """``(import adsrc, import scipy.sparse.linalg after it, whether the first imported SciPy)``
    in each of ``IMPORTS`` new processes: of the adsrc this process imports, from a directory
    where no other adsrc can shadow it."""
    import adsrc

    run.compile_adsrc_bytecode()
    root = os.path.dirname(os.path.dirname(os.path.abspath(adsrc.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    times = []
    for _ in range(IMPORTS):
        done = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], capture_output=True,
                              text=True, check=True, cwd=tempfile.gettempdir(), env=env)
        times.append(json.loads(done.stdout.splitlines()[-1]))
    return times


def batch(case, calls=CALLS):
    """A Case that makes ``calls`` calls of ``case`` per run, on states prepared untimed."""
    return Case(setup=lambda: [case.setup() for _ in range(calls)],
                run=lambda states: [case.run(state) for state in states])


def direct_cases(f, spec, problem, adsrc_adjoint):
    """Cases calling the compiled primal and the compiled sweeps of ``f`` directly, on the
    arguments of ``adsrc_adjoint`` (the Case of ``f.adjoint``)."""
    args = problems.arguments(spec, problem)
    signature, _ = f._signature_or_matrices(args)
    compiled = f._compile(signature)
    entry = compiled.entry

    def setup():
        args, bars = adsrc_adjoint.setup()
        _, bar_arrays, out_bar = f._checked(compiled, args, bars)
        return args, bar_arrays, [out_bar] if entry.returns else []

    def sweeps(state):
        args, bar_arrays, seed = state
        tape = compiled.make_tape()
        compiled.forward(*args, tape)
        scalar_bars = compiled.reverse(*args, *bar_arrays, *seed, tape)
        compiled.release(tape)
        return scalar_bars

    return {
        "primal": Case(setup=lambda: problems.arguments(spec, problem),
                       run=lambda args: compiled.primal(*args)),
        "sweeps": Case(setup=setup, run=sweeps),
    }


def measure(m, names, budget, numba_peer):
    """One row per kernel on the m x m grid: microseconds per call of every case."""
    problem = problems.make_problem(m)
    tool = run.Adsrc("cython")
    rows = []
    for name in names:
        spec = problems.SPEC_BY_NAME[name]
        f = tool.differentiate(run.kernel_function(name), spec)
        public = run.adsrc_cases(tool, f, spec, problem)
        cases = {"f.primal": public["primal"], "f.adjoint": public["grad"]}
        cases.update(direct_cases(f, spec, problem, public["grad"]))
        if numba_peer is not None:
            numba = hand.cases(numba_peer.PRIMALS, numba_peer.ADJOINTS, spec, problem)
            cases.update({"numba primal": numba["primal"], "numba adjoint": numba["grad"]})
        measurements, _, failures = run.measure_in_turn(
            {key: batch(case) for key, case in cases.items()}, budget, min_rounds=7)
        if failures:
            raise next(iter(failures.values()))
        rows.append({"kernel": name, "m": m,
                     **{key: meas.median / CALLS * 1e6 for key, meas in measurements.items()}})
    return rows


def write_results(path, options, rows, versions, seconds, imports):
    def cell(row, key):
        return f"{row[key]:.1f}" if key in row else "-"

    lines = [
        "# Per-call cost of adsrc's Python layer",
        "",
        f"Command: `python benchmarks/overhead.py --sizes {','.join(map(str, options.sizes))}`  ",
        f"Date: {datetime.datetime.now():%Y-%m-%d %H:%M}; whole run: {seconds:.0f} s  ",
        f"Machine: {run.nproc()} CPUs (nproc), {run.cpu_model()}; adsrc at git "
        f"{run.git_revision()}; Numba {versions}",
        "",
        "Microseconds per call: the median over at least 7 rounds (and at least "
        f"{options.budget:g} s of calls per case) of a batch of {CALLS} calls, divided by "
        f"{CALLS}; the cases are timed in turn, round after round. Every kernel as in RESULTS.md "
        "(2-D Poisson, int32 CSR, 5 sweeps), on tiny grids where the compiled code takes a "
        "few microseconds. *sweeps* = the compiled forward and reverse sweeps called directly "
        "on the tape `f.adjoint` would take; *layer* = `f.adjoint` − sweeps (and `f.primal` "
        "− compiled primal): what a call spends in Python around the compiled code. *Numba "
        "hand* = the hand adjoint's `@numba.njit` call (dispatch included).",
        "",
        "| kernel | grid | compiled primal | f.primal | layer | Numba primal | sweeps | "
        "f.adjoint | layer | Numba hand adjoint |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['kernel']} | {row['m']}x{row['m']} | {cell(row, 'primal')} | "
            f"{cell(row, 'f.primal')} | {row['f.primal'] - row['primal']:.1f} | "
            f"{cell(row, 'numba primal')} | {cell(row, 'sweeps')} | {cell(row, 'f.adjoint')} | "
            f"{row['f.adjoint'] - row['sweeps']:.1f} | {cell(row, 'numba adjoint')} |")
    adsrc_times = sorted(seconds for seconds, _, _ in imports)
    scipy_times = sorted(seconds for _, seconds, _ in imports)
    lines += ["", f"Imports, in {len(imports)} new processes (adsrc's modules compiled to "
              f"bytecode): `import adsrc` {statistics.median(adsrc_times):.3f} s (median; "
              f"{adsrc_times[0]:.3f}-{adsrc_times[-1]:.3f} s), importing SciPy "
              f"{'in some' if any(before for _, _, before in imports) else 'in none'} of them; "
              f"`import scipy.sparse.linalg` after it {statistics.median(scipy_times):.3f} s "
              f"({scipy_times[0]:.3f}-{scipy_times[-1]:.3f} s), which adsrc makes at the first "
              "kernel or argument that uses SciPy."]
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=run.sizes,
                        default=(4, 16), help="grid sizes m (default 4,16)")
    parser.add_argument("--kernels", type=run.names,
                        default=tuple(spec.name for spec in problems.SPECS))
    parser.add_argument("--budget", type=float, default=0.3,
                        help="seconds of calls per case and kernel (default 0.3)")
    parser.add_argument("--output", default=os.path.join(HERE, "OVERHEAD.md"))
    options = parser.parse_args(argv)
    unknown = set(options.kernels) - set(problems.SPEC_BY_NAME)
    if unknown:
        parser.error(f"unknown kernels: {', '.join(sorted(unknown))}")
    run.steady_allocator()
    try:
        from peers import numba_peer
        versions = numba_peer.load()
    except ImportError as exc:
        numba_peer, versions = None, f"not available ({exc})"
    started = time.perf_counter()
    rows = [row for m in options.sizes
            for row in measure(m, options.kernels, options.budget, numba_peer)]
    imports = import_times()
    write_results(options.output, options, rows, versions, time.perf_counter() - started,
                  imports)
    print(f"wrote {options.output}")


if __name__ == "__main__":
    main()
