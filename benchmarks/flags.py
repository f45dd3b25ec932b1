"""What a C compiler flag does to adsrc's compiled primals and adjoints.

    python benchmarks/flags.py --flags=-fno-strict-aliasing [--sizes 128,256] [--kernels ...]

writes ``FLAGS_<the flags>.md`` (here ``FLAGS_fno-strict-aliasing.md``), so that each flag that
was weighed keeps its table.

Why: adsrc's own flags (``adsrc/compiling/cython_build.py``) are a choice every user's build
inherits, and a flag's effect is easily smaller than the spread that code layout alone gives one
build (``benchmarks/layout.py``).  So each kernel is built twice per layout, with adsrc's flags
and with the flags under test added (both through ``$ADSRC_CFLAGS``, as a user would), for a few
layouts, and the two builds' primals and adjoints are timed in turn in one process
(``run.measure_in_turn``); a time ratio is the median over rounds of the ratio within a round,
and the table gives each layout's and the median over layouts.  A flag also costs or saves
build time, which a user pays on every kernel's first call: the first grid's builds are timed
too (``differentiate`` and the first calls), the two variants in turn.
"""

import argparse
import datetime
import os
import re
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import problems  # noqa: E402
import run  # noqa: E402

LAYOUTS = ("", "-falign-loops=32", "-falign-functions=64")
KINDS = ("primal", "grad")


def measure(flags, sizes, kernels, sweeps, budget, log):
    """Rows {kernel, m, ratios: {kind: [with ÷ without, per layout]}, builds: {variant:
    [seconds, per layout]} (the first grid only: later grids find the modules built)}."""
    os.environ["ADSRC_CACHE_DIR"] = tempfile.mkdtemp(prefix="adsrc-flags-cache-")
    tool = run.Adsrc("cython")
    run.build_warmup_kernel(tool)   # so that no kernel's build time includes the support modules
    rows = []
    for m in sizes:
        problem = problems.make_problem(m, sweeps=sweeps)
        for name in kernels:
            spec = problems.SPEC_BY_NAME[name]
            ratios = {kind: [] for kind in KINDS}
            builds = {"without": [], "with": []}
            for layout in LAYOUTS:
                cases = {}
                for variant, extra in (("without", ""), ("with", flags)):
                    os.environ["ADSRC_CFLAGS"] = f"{layout} {extra}".strip()
                    started = time.perf_counter()
                    f = tool.differentiate(run.kernel_function(name), spec)
                    for kind, case in run.adsrc_cases(tool, f, spec, problem).items():
                        case.run(case.setup())          # builds under this variant's flags
                        cases[(variant, kind)] = case
                    builds[variant].append(time.perf_counter() - started)
                _, rounds, failures = run.measure_in_turn(cases, budget, min_rounds=10)
                if failures:
                    raise next(iter(failures.values()))
                for kind in KINDS:
                    ratios[kind].append(statistics.median(
                        sample[("with", kind)] / sample[("without", kind)] for sample in rounds))
            log(f"{name} {m}x{m}: adjoint with/without "
                + ", ".join(f"{r:.3f}" for r in ratios["grad"]))
            rows.append({"kernel": name, "m": m, "ratios": ratios,
                         "builds": builds if m == sizes[0] else None})
    os.environ.pop("ADSRC_CFLAGS")
    return rows


def output_name(flags):
    """The output file of a flag set: ``-fno-strict-aliasing`` ->
    ``FLAGS_fno-strict-aliasing.md``, ``-O2 -g`` -> ``FLAGS_O2_g.md``."""
    words = [re.sub(r"[^A-Za-z0-9=.+-]", "", word.lstrip("-")) for word in flags.split()]
    return "FLAGS_" + "_".join(word for word in words if word) + ".md"


def _cells(values):
    return " / ".join(f"{v:.3f}" for v in values)


def _seconds(values):
    return " / ".join(f"{v:.2f}" for v in values)


def write_results(path, options, rows, seconds):
    lines = [
        f"# C flags: `{options.flags}`",
        "",
        f"Command: `python benchmarks/flags.py --flags='{options.flags}' "
        f"--sizes {','.join(map(str, options.sizes))}`  ",
        f"Date: {datetime.datetime.now():%Y-%m-%d %H:%M}; whole run: {seconds:.0f} s  ",
        f"Machine: {run.nproc()} CPUs (nproc), {run.cpu_model()}; adsrc at git "
        f"{run.git_revision()}",
        "",
        "Each kernel (as in RESULTS.md: 2-D Poisson, int32 CSR, "
        f"{options.sweeps} sweeps) is built with adsrc's flags, and with `{options.flags}` "
        "added, under each layout (alignment flags that only move code: "
        + ", ".join(f"`{layout or '-'}`" for layout in LAYOUTS) + "). The two builds are "
        "timed in turn; each cell is time with the flags ÷ time without, the median over "
        "rounds of the ratio within a round, per layout, then the median over the layouts.",
        "",
        "| kernel | grid | primal, per layout | primal, median | adjoint, per layout | "
        "adjoint, median |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        primal, grad = row["ratios"]["primal"], row["ratios"]["grad"]
        lines.append(f"| {row['kernel']} | {row['m']}x{row['m']} | {_cells(primal)} | "
                     f"{statistics.median(primal):.3f} | {_cells(grad)} | "
                     f"{statistics.median(grad):.3f} |")
    lines += [
        "",
        f"Build time: `differentiate` and the first calls on the {options.sizes[0]}x"
        f"{options.sizes[0]} grid, with the support modules built (Cython and the C compiler, in a "
        "process that has built before), per layout; the ratio is of the medians over the layouts.",
        "",
        "| kernel | without, per layout (s) | with, per layout (s) | with ÷ without |",
        "|---|---|---|---|",
    ]
    for row in rows:
        if row["builds"]:
            without, with_ = row["builds"]["without"], row["builds"]["with"]
            lines.append(f"| {row['kernel']} | {_seconds(without)} | {_seconds(with_)} | "
                         f"{statistics.median(with_) / statistics.median(without):.3f} |")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flags", required=True, help="the C flags under test")
    parser.add_argument("--sizes", type=run.sizes, default=(128, 256),
                        help="grid sizes m (default 128,256)")
    parser.add_argument("--kernels", type=run.names,
                        default=tuple(spec.name for spec in problems.SPECS))
    parser.add_argument("--sweeps", type=int, default=5)
    parser.add_argument("--budget", type=float, default=0.3,
                        help="seconds of calls per case (default 0.3)")
    parser.add_argument("--output", help="default: FLAGS_<the flags>.md beside this script")
    options = parser.parse_args(argv)
    options.output = options.output or os.path.join(HERE, output_name(options.flags))
    started = time.perf_counter()
    rows = measure(options.flags, options.sizes, options.kernels, options.sweeps,
                   options.budget, lambda text: print(text, flush=True))
    write_results(options.output, options, rows, time.perf_counter() - started)
    print(f"wrote {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
