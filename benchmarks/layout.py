"""How much of an adjoint/primal ratio is code layout: the same C code, placed differently.

    python benchmarks/layout.py [--sizes 128,256] [--kernels jacobi_csr,spmv] [--output ...]

Why: a loop's time depends on where the linker puts its instructions, not only on what they
are.  On a 2-core AMD EPYC, the Cython hand primal of weighted Jacobi at 128x128 took 0.25 ms
in one module and 0.34 ms in another, with the same instructions (objdump) at other addresses,
and gcc's ``-falign-loops`` moved it between the two.  RESULTS.md's "adsrc ÷ hand" divides two
such ratios, each from one build, so a cell carries that noise twice.

For each layout (a set of gcc alignment flags, given to the C compiler through
``$ADSRC_CFLAGS``, so that adsrc's generated module and the Cython hand module are both rebuilt
with it) a child process times adsrc's compiled primal and adjoint and the Cython hand primal
and adjoint of every kernel that has one, in turn, round after round (``run.measure_in_turn``:
ratios are medians of ratios within a round), and checks that the two gradients agree.
LAYOUT.md gives, per layout, both adjoint/primal ratios and their quotient, and over the
layouts their range and the quotient of the medians: the comparison with the layout averaged
out (the idea of Curtsinger and Berger's Stabilizer, with a handful of layouts).
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
from peers import cython_hand_peer  # noqa: E402

# the first is adsrc's own flags alone; the others move loops and functions to other addresses
LAYOUTS = ("", "-falign-loops=1", "-falign-loops=32", "-falign-loops=64",
           "-falign-functions=64", "-falign-jumps=32")
KERNELS = cython_hand_peer.KERNELS
GRADIENT_RTOL = 1e-8


def measure_layout(sizes, kernels, sweeps, budget):
    """In this process, under the flags already in ``$ADSRC_CFLAGS``: for each kernel and grid,
    the median times and the within-round ratios of adsrc's and the Cython hand's primal and
    adjoint, and the largest relative difference of their gradients."""
    run.steady_allocator()
    cython_hand_peer.load()
    tool = run.Adsrc("cython")
    rows = []
    for m in sizes:
        problem = problems.make_problem(m, sweeps=sweeps)
        for name in kernels:
            spec = problems.SPEC_BY_NAME[name]
            f = tool.differentiate(run.kernel_function(name), spec)
            group = {"adsrc_" + key: case
                     for key, case in run.adsrc_cases(tool, f, spec, problem).items()}
            group.update({"hand_" + key: case
                          for key, case in cython_hand_peer.build(spec, problem).items()})
            measurements, rounds, failures = run.measure_in_turn(group, budget)
            if failures:
                raise next(iter(failures.values()))
            row = {"rounds": rounds}
            rows.append({
                "kernel": name, "m": m,
                "times": {key: meas.median for key, meas in measurements.items()},
                "adsrc": run.round_ratio(row, "adsrc_grad", "adsrc_primal"),
                "hand": run.round_ratio(row, "hand_grad", "hand_primal"),
                "quotient": run.round_ratio(row, ("adsrc_grad", "adsrc_primal"),
                                            ("hand_grad", "hand_primal")),
                "gradient_diff": problems.max_rel_diff(
                    measurements["adsrc_grad"].result, measurements["hand_grad"].result,
                    spec.compared),
            })
    return rows


def run_layouts(options, log):
    """One child process per layout, sharing a cache directory; {layout: rows}."""
    cache = tempfile.mkdtemp(prefix="adsrc-layout-cache-")
    results = {}
    for flags in options.layouts:
        log(f"layout {flags or '(adsrc flags only)'}")
        env = dict(os.environ, ADSRC_CACHE_DIR=cache, ADSRC_CFLAGS=flags)
        child = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child",
             "--sizes", ",".join(map(str, options.sizes)),
             "--kernels", ",".join(options.kernels), "--sweeps", str(options.sweeps),
             "--budget", str(options.budget)],
            capture_output=True, text=True, env=env)
        if child.returncode != 0:
            raise SystemExit(f"the child for layout {flags!r} failed:\n{child.stderr}")
        results[flags] = json.loads(child.stdout.splitlines()[-1])
    return results


def _spread(values, digits=2):
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def write_results(path, options, results, seconds):
    lines = []
    add = lines.append
    layouts = list(results)
    add("# Code layout and the adjoint/primal ratios")
    add("")
    add(f"Command: `python benchmarks/layout.py --sizes {','.join(map(str, options.sizes))}`  ")
    add(f"Date: {datetime.datetime.now():%Y-%m-%d %H:%M}; whole run: {seconds:.0f} s  ")
    add(f"Machine: {run.nproc()} CPUs (nproc), {run.cpu_model()}; adsrc at git "
        f"{run.git_revision()}")
    add("")
    add("Each layout is one build of adsrc's generated module and of the Cython hand module "
        "(`peers/hand_adjoints.pyx`) with adsrc's C flags plus the flags named, given through "
        "`$ADSRC_CFLAGS`; they change only where loops and functions start. Per kernel and "
        f"grid ({options.sweeps} sweeps), adsrc's primal and adjoint and the hand primal and "
        "adjoint are timed in turn, round after round, as in RESULTS.md; each ratio is the "
        "median of the ratios within a round. *quotient* = (adsrc adjoint/primal) ÷ (hand "
        "adjoint/primal), RESULTS.md's *adsrc ÷ Cython hand*. Times in ms. In every row the "
        f"two gradients agree to {GRADIENT_RTOL:g} (relative, max norm).")
    add("")
    add("## Over the layouts")
    add("")
    add("| kernel | grid | adsrc primal | hand primal | adsrc adj/primal | hand adj/primal | "
        "quotient | median adsrc ratio ÷ median hand ratio |")
    add("|---|---|---|---|---|---|---|---|")
    first = results[layouts[0]]
    for index, row in enumerate(first):
        rows = [results[flags][index] for flags in layouts]
        adsrc = [r["adsrc"] for r in rows]
        hand = [r["hand"] for r in rows]
        add(f"| {row['kernel']} | {row['m']}x{row['m']} | "
            f"{_spread([r['times']['adsrc_primal'] * 1e3 for r in rows], 3)} | "
            f"{_spread([r['times']['hand_primal'] * 1e3 for r in rows], 3)} | "
            f"{_spread(adsrc)} | {_spread(hand)} | {_spread([r['quotient'] for r in rows])} | "
            f"{statistics.median(adsrc) / statistics.median(hand):.2f} |")
    add("")
    add("## Per layout")
    add("")
    add("| kernel | grid | layout | adsrc primal | adsrc adjoint | adsrc adj/primal | "
        "hand primal | hand adjoint | hand adj/primal | quotient |")
    add("|---|---|---|---|---|---|---|---|---|---|")
    for index, row in enumerate(first):
        for flags in layouts:
            r = results[flags][index]
            t = {key: value * 1e3 for key, value in r["times"].items()}
            add(f"| {row['kernel']} | {row['m']}x{row['m']} | `{flags or '-'}` | "
                f"{t['adsrc_primal']:.3f} | {t['adsrc_grad']:.3f} | {r['adsrc']:.2f} | "
                f"{t['hand_primal']:.3f} | {t['hand_grad']:.3f} | {r['hand']:.2f} | "
                f"{r['quotient']:.2f} |")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=run.sizes,
                        default=(128, 256), help="grid sizes m (default 128,256)")
    parser.add_argument("--kernels", type=run.names,
                        default=KERNELS, help="kernels with a Cython hand adjoint "
                        f"(default {','.join(KERNELS)})")
    parser.add_argument("--layouts", type=lambda s: tuple(s.split(";")), default=LAYOUTS,
                        help="';'-separated flag sets, one build each (default: "
                        f"{';'.join(LAYOUTS)})")
    parser.add_argument("--sweeps", type=int, default=5)
    parser.add_argument("--budget", type=float, default=1.0,
                        help="seconds of calls per case and measurement (default 1)")
    parser.add_argument("--output", default=os.path.join(HERE, "LAYOUT.md"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    unknown = set(options.kernels) - set(KERNELS)
    if unknown:
        parser.error(f"no Cython hand adjoint of {', '.join(sorted(unknown))}")
    if options.child:
        rows = measure_layout(options.sizes, options.kernels, options.sweeps, options.budget)
        print(json.dumps(rows))
        return
    started = time.perf_counter()
    results = run_layouts(options, lambda text: print(text, flush=True))
    worst = max(row["gradient_diff"] for rows in results.values() for row in rows)
    if not worst <= GRADIENT_RTOL:
        raise SystemExit(f"adsrc's and the hand gradients differ by {worst:.1e}")
    write_results(options.output, options, results, time.perf_counter() - started)
    print(f"wrote {options.output}")


if __name__ == "__main__":
    main()
