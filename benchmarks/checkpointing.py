"""Checkpointed adjoints of a long Gauss-Seidel loop; writes CHECKPOINTING.md.

    python benchmarks/checkpointing.py                  # 256x256 grid, 1000 sweeps, 10 snapshots
    python benchmarks/checkpointing.py --m 64 --steps 200 --output /tmp/c.md
    python benchmarks/checkpointing.py --tolerance 1e-3    # the loop to a tolerance (default)

The loop: ``steps`` forward Gauss-Seidel sweeps (``adsrc.kernels.gauss_seidel`` with one sweep
as the step kernel) on the 2-D Poisson 5-point matrix of an m x m grid, with the matrix values,
the right-hand side and the initial x active (``wrt=("data", "b", "x")``), reversed by
``adsrc.checkpointed`` with the store_all, periodic and binomial (revolve) schedules, on the
compiled (Cython) backend.  The same loop written inside one kernel is measured too: with its
loop marked (``for s in adsrc.checkpointed(range(sweeps), snapshots=10)``, the in-kernel spelling
of the binomial row; its snapshots are a constant of the kernel, so the row is measured only with
``--snapshots 10``), and unmarked, with the plain adjoint (``gauss_seidel`` with
``sweeps=steps``), and so are Hessian-vector products through it, marked and unmarked (also
only with ``--snapshots 10``); and so is the loop run to a tolerance instead of a fixed number
of sweeps (``until=``: sweeps until the residual is at most ``--tolerance`` times the initial
one), whose binomial schedule is made online.

Per schedule: the adjoint time (median of ``--repeats`` calls) and its ratio to the compiled
primal loop, step executions and the peak checkpoint + tape bytes counted by adsrc
(``loop.adjoint.last_stats``), in copies of x, and memory measured around one adjoint call:

* *tracemalloc + tape*: the peak of Python allocations during the call (``tracemalloc``; NumPy
  arrays, so checkpoints and the final-state copy, are traced) above what was allocated before
  it, plus the most bytes held by the C tapes (``malloc``'d, invisible to tracemalloc); the two
  peaks may not coincide, so this is an upper bound of what the call adds;
* *process peak RSS*: the peak resident set size (VmHWM) of a fresh process that builds the
  problem and runs one adjoint call of that schedule only (the interpreter, NumPy and the
  problem included), beside that of a process running the primal loop only.

Timings are informative only: nothing asserts them.
"""

import argparse
import datetime
import importlib
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import problems  # noqa: E402
from run import (compile_adsrc_bytecode, cpu_model, git_revision, memory_total,  # noqa: E402
                 nproc, version_of)

import adsrc  # noqa: E402
from adsrc.checkpointing import checkpointed  # noqa: E402
from adsrc.kernels import solvers  # noqa: E402
from adsrc.kernels.solvers import gauss_seidel  # noqa: E402
from adsrc.runtime.checkpointing import schedule_actions  # noqa: E402

WRT = ("data", "b", "x")
MB = 1 << 20
MARKED_SNAPSHOTS = 10       # as gauss_seidel_marked writes it


def gauss_seidel_marked(indptr, indices, data, x, b, sweeps):
    """``adsrc.kernels.gauss_seidel`` with its loop over the sweeps marked: the binomial row
    spelled inside a kernel (an option of the marker must be a constant written there)."""
    n = len(b)
    for s in adsrc.checkpointed(range(sweeps), snapshots=10):
        for i in range(n):
            acc = b[i]
            diag = 0.0
            for k in range(indptr[i], indptr[i + 1]):
                j = indices[k]
                if j == i:
                    diag = data[k]
                else:
                    acc -= data[k] * x[j]
            x[i] = acc / diag


def gauss_seidel_marked_loss(indptr, indices, data, x, b, w, sweeps):
    """``<w, x>`` after ``sweeps`` Gauss-Seidel sweeps, the loop marked as in
    ``gauss_seidel_marked``: Hessian-vector products through the checkpointed loop."""
    for s in adsrc.checkpointed(range(sweeps), snapshots=10):
        gauss_seidel(indptr, indices, data, x, b, 1)
    return np.dot(w, x)


def gauss_seidel_loss(indptr, indices, data, x, b, w, sweeps):
    """The same loss without the marker: Hessian-vector products with every sweep taped."""
    gauss_seidel(indptr, indices, data, x, b, sweeps)
    return np.dot(w, x)


# Hessian-vector products with respect to the matrix values: label -> kernel
HVP_KERNELS = {"hvp-marked": gauss_seidel_marked_loss, "hvp-plain": gauss_seidel_loss}


def make_hvp(label):
    return adsrc.hvp(HVP_KERNELS[label], wrt="data", backend="cython")


def hvp_direction(problem):
    return np.random.default_rng(1).standard_normal(problem[2].size)


def one_hvp(hvp, problem, steps, v):
    """One H v (the arguments are left alone: adsrc.hvp works on copies)."""
    indptr, indices, data, x0, b, w = problem
    return hvp(indptr, indices, data, x0, b, w, steps, data_dot=v)


def make_problem(m, seed=0):
    indptr, indices, data = problems.poisson_csr(m)
    rng = np.random.default_rng(seed)
    n = m * m
    x0, b, w = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), rng.standard_normal(n)
    return indptr, indices, data, x0, b, w


def configurations(snapshots):
    """(label, checkpointed options) of the compared schedules."""
    return [("store_all", dict(schedule="store_all")),
            ("periodic", dict(schedule="periodic", snapshots=snapshots)),
            ("binomial", dict(schedule="binomial", snapshots=snapshots))]


MAX_STEPS = 100_000


def converged(problem, tolerance):
    """The ``until=`` predicate of the loop to a tolerance: ``||b - A x|| <= tolerance *
    ||b - A x0||``, with ``A x`` by scipy.sparse (a fraction of a sweep's time).  Squared norms
    without BLAS: ``np.linalg.norm`` and ``r @ r`` took up to 12 ms for 65536 values on a busy
    2-CPU machine (BLAS threads waiting for a CPU), more than a sweep."""
    import scipy.sparse as sp
    indptr, indices, data, x0, b, _ = problem
    matrix = sp.csr_matrix((data, indices, indptr), shape=(len(x0), len(x0)))

    def squared_residual(x):
        residual = b - matrix @ x
        return np.sum(residual * residual)

    limit = tolerance ** 2 * squared_residual(x0)
    return lambda indptr, indices, data, x, b, sweeps: squared_residual(x) <= limit


def make_loop(options):
    step = adsrc.differentiate(solvers.gauss_seidel, wrt=WRT, outputs=("x",), backend="cython")
    return checkpointed(step, **options)


def make_marked():
    return adsrc.differentiate(gauss_seidel_marked, wrt=WRT, outputs=("x",), backend="cython")


def one_marked(marked, problem, steps):
    """One adjoint call of the kernel with the marked loop, ``steps`` sweeps."""
    indptr, indices, data, x0, b, w = problem
    marked.adjoint(indptr, indices, data, x0.copy(), b, steps, x_bar=w.copy())
    return marked.adjoint.last_stats


def one_adjoint(loop, problem, steps=None, until=None):
    """One adjoint call of ``steps`` sweeps, or of sweeps ``until`` the predicate holds."""
    indptr, indices, data, x0, b, w = problem
    x = x0.copy()
    loop.adjoint(indptr, indices, data, x, b, 1, steps=steps, until=until,
                 max_steps=None if until is None else MAX_STEPS, x_bar=w.copy())
    return loop.adjoint.last_stats


def timed(call, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def traced_memory(call):
    """Peak of traced Python allocations during ``call()`` above those before it."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak - before


def child_rss(m, steps, snapshots, tolerance, label):
    """Peak RSS (bytes) of a new process running one adjoint call of schedule ``label``."""
    return child_run(m, steps, snapshots, tolerance, label)["rss"]


def child_run(m, steps, snapshots, tolerance, label):
    """What :func:`rss_of` reports of a new process running ``label``: ``{"rss": bytes}``, and
    for ``"primal+schedules"`` the ``"seconds"`` its first revolve schedule took."""
    command = [sys.executable, os.path.abspath(__file__), "--m", str(m), "--steps", str(steps),
               "--snapshots", str(snapshots), "--tolerance", repr(tolerance), "--rss-of", label]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def rss_of(label, m, steps, snapshots, tolerance):
    problem = make_problem(m)
    measured = {}
    if label in ("primal", "primal+schedules"):
        indptr, indices, data, x0, b, _ = problem
        make_loop(dict(schedule="store_all"))(indptr, indices, data, x0.copy(), b, 1, steps=steps)
        if label == "primal+schedules":     # what every checkpointed call adds before any array
            start = time.perf_counter()
            schedule_actions("binomial", steps, snapshots)
            measured["seconds"] = time.perf_counter() - start
    elif label == "numba-compile":
        # what checkpoint_schedules would run at the first revolve schedule, were adsrc not to
        # call its helper as Python: the Numba-compiled n_advance (its first call compiles it)
        from checkpoint_schedules import multistage
        start = time.perf_counter()
        multistage.n_advance(steps, snapshots, trajectory="maximum")  # as the schedule calls it
        measured["seconds"] = time.perf_counter() - start
    elif label == "plain":
        plain_adjoint(adsrc.differentiate(solvers.gauss_seidel, wrt=WRT, outputs=("x",),
                                          backend="cython"), problem, steps)
    elif label == "marked":
        one_marked(make_marked(), problem, steps)
    elif label in HVP_KERNELS:
        one_hvp(make_hvp(label), problem, steps, hvp_direction(problem))
    elif label == "marked-hit":
        # a cache hit: what the marked kernel's differentiate and first adjoint call cost in a
        # process whose cache holds its modules, on a grid small enough for the call's own work
        # not to count (the modules are those of every grid: they depend on the types only)
        small = make_problem(4)
        start = time.perf_counter()
        importlib.import_module("checkpoint_schedules")     # timed apart: once per process
        measured["import"] = time.perf_counter() - start
        start = time.perf_counter()
        one_marked(make_marked(), small, 3)
        measured["seconds"] = time.perf_counter() - start
    elif label == "until":
        one_adjoint(make_loop(dict(configurations(snapshots))["binomial"]), problem,
                    until=converged(problem, tolerance))
    else:
        one_adjoint(make_loop(dict(configurations(snapshots))[label]), problem, steps)
    print(json.dumps({"rss": peak_rss(), **measured}))


def peak_rss():
    """This process's peak resident set size, in bytes: VmHWM of /proc/self/status, which
    starts afresh at exec (``ru_maxrss`` keeps the parent's high-water mark across fork and
    exec on Linux, so it is only the fallback)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def plain_adjoint(whole, problem, steps):
    """The plain adjoint of ``steps`` sweeps inside one ``gauss_seidel`` call; its TapeStats."""
    indptr, indices, data, x0, b, w = problem
    whole.adjoint(indptr, indices, data, x0.copy(), b, steps, x_bar=w.copy())
    return whole.adjoint.last_tape_stats


def measure(m, steps, snapshots, tolerance, repeats, log):
    problem = make_problem(m)
    indptr, indices, data, x0, b, w = problem
    xbytes = x0.nbytes
    # warm-up: compile (or load) the step adjoints; the first revolve schedule imports
    # checkpoint_schedules (and Numba, when Numba is installed)
    for _, options in configurations(snapshots):
        one_adjoint(make_loop(options), problem, 3)
    marked = make_marked() if snapshots == MARKED_SNAPSHOTS else None
    if marked is not None:
        one_marked(marked, problem, 3)
    loop = make_loop(dict(schedule="store_all"))

    def primal():
        x = x0.copy()
        loop(indptr, indices, data, x, b, 1, steps=steps)

    primal()
    t_primal = timed(primal, repeats)
    log(f"primal: {t_primal:.3f} s for {steps} sweeps")
    rows = []
    for label, options in configurations(snapshots):
        loop = make_loop(options)
        one_adjoint(loop, problem, steps)
        t_adjoint = timed(lambda: one_adjoint(loop, problem, steps), repeats)
        stats, traced = traced_memory(lambda: one_adjoint(loop, problem, steps))
        rss = child_rss(m, steps, snapshots, tolerance, label)
        rows.append(dict(label=label, snapshots=options.get("snapshots"), time=t_adjoint,
                         ratio=t_adjoint / t_primal, stats=stats,
                         memory=traced + stats.peak_tape_bytes, rss=rss))
        log(f"{label}: {t_adjoint:.3f} s, {stats}")
    marked_hits = None
    if marked is not None:      # the binomial row, the loop marked inside the kernel
        t_adjoint = timed(lambda: one_marked(marked, problem, steps), repeats)
        stats, traced = traced_memory(lambda: one_marked(marked, problem, steps))
        rows.append(dict(label="marked", snapshots=snapshots, time=t_adjoint,
                         ratio=t_adjoint / t_primal, stats=stats,
                         memory=traced + stats.peak_tape_bytes,
                         rss=child_rss(m, steps, snapshots, tolerance, "marked")))
        log(f"marked loop in a kernel: {t_adjoint:.3f} s, {stats}")
        compile_adsrc_bytecode()
        marked_hits = [child_run(m, steps, snapshots, tolerance, "marked-hit")
                       for _ in range(5)]
        log(f"marked kernel, cache hit in a new process: {marked_hits}")
        hvps = measure_hvps(m, problem, steps, snapshots, tolerance, repeats, t_primal, log)
    else:
        hvps = None
        log(f"no row for the loop marked in a kernel: it holds {MARKED_SNAPSHOTS} snapshots, "
            f"not {snapshots}")
    # the loop to a tolerance, binomial made online; its primal tests the residual after each sweep
    until = converged(problem, tolerance)
    options = dict(configurations(snapshots))["binomial"]
    loop = make_loop(options)

    def primal_until():
        x = x0.copy()
        loop(indptr, indices, data, x, b, 1, until=until, max_steps=MAX_STEPS)

    primal_until()
    t_primal_until = timed(primal_until, repeats)
    one_adjoint(loop, problem, until=until)
    t_adjoint = timed(lambda: one_adjoint(loop, problem, until=until), repeats)
    stats, traced = traced_memory(lambda: one_adjoint(loop, problem, until=until))
    rows.append(dict(label="until", snapshots=snapshots, time=t_adjoint,
                     ratio=t_adjoint / t_primal_until, stats=stats,
                     memory=traced + stats.peak_tape_bytes,
                     rss=child_rss(m, steps, snapshots, tolerance, "until")))
    log(f"until: primal {t_primal_until:.3f} s, adjoint {t_adjoint:.3f} s, {stats}")
    # the same loop inside one kernel, with the plain adjoint
    whole = adsrc.differentiate(solvers.gauss_seidel, wrt=WRT, outputs=("x",), backend="cython")
    plain_adjoint(whole, problem, 1)
    t_plain = timed(lambda: plain_adjoint(whole, problem, steps), repeats)
    tape, traced = traced_memory(lambda: plain_adjoint(whole, problem, steps))
    rows.append(dict(label="plain", snapshots=None, time=t_plain, ratio=t_plain / t_primal,
                     stats=None, tape=tape, memory=traced + tape.peak_bytes,
                     rss=child_rss(m, steps, snapshots, tolerance, "plain")))
    log(f"plain adjoint of the loop kernel: {t_plain:.3f} s, {tape}")
    return dict(m=m, n=m * m, steps=steps, snapshots=snapshots, xbytes=xbytes,
                bars_bytes=data.nbytes + b.nbytes, tolerance=tolerance,
                until_primal=t_primal_until, until_steps=stats.steps, primal=t_primal,
                primal_rss=child_rss(m, steps, snapshots, tolerance, "primal"),
                schedules=child_run(m, steps, snapshots, tolerance, "primal+schedules"),
                numba_compile=(child_run(m, steps, snapshots, tolerance, "numba-compile")
                               if version_of("numba") != "not installed" else None),
                marked_hits=marked_hits, rows=rows, hvps=hvps)


def measure_hvps(m, problem, steps, snapshots, tolerance, repeats, t_primal, log):
    """H v of ``<w, x_final>`` with respect to the matrix values, through the marked loop and
    with every sweep taped: ``{"rows": [...], "difference": max relative difference}``."""
    rows, values = [], {}
    v = hvp_direction(problem)
    for label in HVP_KERNELS:
        hvp = make_hvp(label)
        one_hvp(hvp, problem, 3, v)             # warm-up: compile (or load) the modules
        values[label] = one_hvp(hvp, problem, steps, v)
        t_hvp = timed(lambda: one_hvp(hvp, problem, steps, v), repeats)
        rows.append(dict(label=label, time=t_hvp, ratio=t_hvp / t_primal,
                         rss=child_rss(m, steps, snapshots, tolerance, label)))
        log(f"{label}: {t_hvp:.3f} s")
    plain = values["hvp-plain"]
    difference = float(np.max(np.abs(values["hvp-marked"] - plain)) / np.max(np.abs(plain)))
    return dict(rows=rows, difference=difference)


def hvp_table(result):
    """The Hessian-vector products' table and the sentence after it, as lines."""
    hvps = result["hvps"]
    if hvps is None:
        return []
    labels = {"hvp-marked": f"loop marked (binomial, {MARKED_SNAPSHOTS} snapshots)",
              "hvp-plain": "loop in one kernel, every sweep taped"}
    lines = ["Hessian-vector products of the loss <w, x_final> with respect to the matrix "
             "values (`adsrc.hvp(f, wrt=\"data\")`, forward over reverse; "
             "`gauss_seidel_marked_loss` and `gauss_seidel_loss` in benchmarks/checkpointing.py): "
             "through the marked loop the steps run under the same revolve schedule, whose "
             "checkpoints hold x and its tangent.",
             "",
             "| H v | time (s) | H v/primal | process peak RSS |",
             "|---|---|---|---|"]
    for row in hvps["rows"]:
        lines.append(f"| {labels[row['label']]} | {row['time']:.3f} | {row['ratio']:.2f} "
                     f"| {row['rss'] / MB:.0f} MB |")
    lines += ["",
              f"The two H v differ by at most {hvps['difference']:.1e} of the largest entry. "
              "*time*: median of calls (each on copies of the arguments); *process peak RSS*: "
              "as in the table above, for a process running one H v.",
              ""]
    return lines


def numba_compile(result):
    """The first call of the Numba-compiled revolve helper in a fresh process, as text."""
    if result["numba_compile"] is None:
        return ""
    return (f": its first call, which compiles it, takes {result['numba_compile']['seconds']:.1f}"
            " s in a fresh process")


def marked_hit(result):
    """The marked kernel's cache hit in a new process, as text."""
    hits = sorted(1000 * hit["seconds"] for hit in result["marked_hits"])
    imports = sorted(1000 * hit["import"] for hit in result["marked_hits"])
    return (f". A new process whose cache holds that kernel's modules takes "
            f"{statistics.median(hits):.0f} ms (median of {len(hits)} processes, "
            f"{hits[0]:.0f}-{hits[-1]:.0f} ms) for `differentiate` and the first `adjoint` call "
            "on a 4x4 grid, 3 sweeps: the splitting of the kernel, the source keys of its "
            "parts and the loading of their compiled modules, with adsrc's own modules "
            "compiled to bytecode beforehand, as an installed package has them; the process "
            f"imported checkpoint_schedules before, in {statistics.median(imports):.0f} ms "
            "(median), which the first checkpointed call of a process does.")


def table(result):
    xbytes = result["xbytes"]
    lines = ["| schedule | snapshots | adjoint (s) | adjoint/primal | step executions (taped) "
             "| peak checkpoints | peak checkpoints + tapes (copies of x) | tracemalloc + tape "
             "| process peak RSS |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        stats = row["stats"]
        if stats is None:
            label = "loop in one kernel, plain adjoint"
            executions = f"{result['steps']} ({result['steps']})"
            checkpoints = "-"
            held = f"{row['tape'].peak_bytes / MB:.1f} MB ({row['tape'].peak_bytes / xbytes:.2f})"
        else:
            label = row["label"]
            if label == "until":
                label = (f"binomial, online: until residual <= {result['tolerance']:g} x "
                         f"initial ({stats.steps} sweeps)")
            elif label == "marked":
                label = "binomial, loop marked inside the kernel"
            executions = f"{stats.forward_steps} ({stats.taped_steps})"
            checkpoints = str(stats.peak_snapshots)
            held = f"{stats.peak_bytes / MB:.1f} MB ({stats.peak_bytes / xbytes:.2f})"
        lines.append(f"| {label} | {row['snapshots'] or '-'} | {row['time']:.3f} "
                     f"| {row['ratio']:.2f} | {executions} | {checkpoints} | {held} "
                     f"| {row['memory'] / MB:.1f} MB | {row['rss'] / MB:.0f} MB |")
    return "\n".join(lines)


def write(path, result, command, elapsed):
    from checkpoint_schedules.multistage import optimal_extra_steps
    steps, snapshots = result["steps"], result["snapshots"]
    text = [
        "# adsrc checkpointed adjoints: a long Gauss-Seidel loop",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now():%Y-%m-%d %H:%M}; whole run: {elapsed:.0f} s  ",
        f"Machine: {nproc()} CPUs (nproc), {cpu_model()}, {memory_total()} RAM, "
        f"{platform.system()} {platform.release()} {platform.machine()}  ",
        f"Python {platform.python_version()}, NumPy {np.__version__}, Cython "
        f"{version_of('Cython')}, checkpoint_schedules "
        f"{_distribution_version('checkpoint_schedules')}, adsrc {adsrc.__version__} at git "
        f"{git_revision()}; adsrc backend: **cython**",
        "",
        f"Problem: {steps} forward Gauss-Seidel sweeps (`adsrc.kernels.gauss_seidel`, one sweep "
        f"per step) on the 2-D Poisson 5-point matrix of a {result['m']}x{result['m']} grid "
        f"(n = {result['n']}, CSR, int32 indices), `wrt=(\"data\", \"b\", \"x\")`, "
        f"loss <w, x_final>; {snapshots} snapshots for periodic and binomial. One copy of x is "
        f"{result['xbytes'] / MB:.2f} MB. Primal: the compiled step run {steps} times, "
        f"{result['primal']:.3f} s (median of calls); a fresh process running only the primal "
        f"loop peaks at {result['primal_rss'] / MB:.0f} MB RSS, "
        f"{result['schedules']['rss'] / MB:.0f} MB when it also makes a revolve schedule, "
        f"which takes {result['schedules']['seconds']:.2f} s there (importing "
        "checkpoint_schedules, which imports Numba when Numba is installed: Numba "
        f"{version_of('numba')} here; adsrc runs its revolve helper as Python, where "
        f"checkpoint_schedules would compile it with Numba{numba_compile(result)}); every "
        "checkpointed call imports checkpoint_schedules, and a binomial one runs that helper.",
        "",
        table(result),
        "",
        f"The *online* row runs the loop to a tolerance instead: `loop.adjoint(..., "
        f"until=converged, max_steps={MAX_STEPS})`, sweeps until the residual "
        f"`||b - A x||` is at most {result['tolerance']:g} times that of the initial x "
        f"({result['until_steps']} sweeps; the test is a scipy.sparse product after each "
        "sweep), with the binomial schedule made online (checkpoints at the multiples of a "
        "period that doubles, then each segment reversed by revolve). Its adjoint/primal is "
        f"over the primal loop to the same tolerance, {result['until_primal']:.3f} s. Offline "
        f"revolve, knowing the {result['until_steps']} sweeps, would run "
        f"{result['until_steps']} + optimal_extra_steps = "
        f"{result['until_steps'] + optimal_extra_steps(result['until_steps'], snapshots)} "
        "step executions.",
        "",
        "The row *binomial, loop marked inside the kernel* is the binomial row spelled inside a "
        "kernel: `gauss_seidel` with its "
        "loop over the sweeps written `for s in adsrc.checkpointed(range(sweeps), "
        f"snapshots={MARKED_SNAPSHOTS}):` (`gauss_seidel_marked` in benchmarks/checkpointing.py), "
        f"differentiated whole and called as `f.adjoint(indptr, indices, data, x, b, {steps}, "
        "x_bar=w)`; adsrc splits off the sweep as the step and runs it under the same schedule"
        + (marked_hit(result) if result["marked_hits"] is not None else
           f"; not measured in this run, whose snapshots ({snapshots}) differ from the "
           f"kernel's ({MARKED_SNAPSHOTS})."),
        "",
        "Columns: *adjoint* = `loop.adjoint(..., steps=...)` (for the marked row, `f.adjoint`), "
        "forward and reverse sweeps, median of calls; *adjoint/primal* = that over the primal "
        "loop's time; *step executions* = "
        "`last_stats.forward_steps` (taped ones in parentheses), counted by adsrc: revolve's "
        f"optimum for ({steps}, {snapshots}) is {steps} + optimal_extra_steps = "
        f"{steps + optimal_extra_steps(steps, snapshots)}; *peak checkpoints + tapes* = "
        "`last_stats.peak_bytes`, the most bytes of checkpoints and step tapes held at once "
        "(for the plain adjoint, its tape's `peak_bytes`), and in copies of x; the adjoint also "
        "keeps one copy of the final state (1 copy of x here) to leave x as the primal does, "
        "which is not in that column but is in the next two; *tracemalloc + tape* = peak of "
        "traced Python allocations during one adjoint call above those before it (NumPy arrays "
        "included) plus the most bytes the C tapes held (an upper bound: the two peaks need not "
        "coincide; the C tape grows by doubling, so its allocation may exceed what it holds); it "
        f"includes the zero-started data_bar and b_bar the call returns "
        f"({result['bars_bytes'] / MB:.1f} MB) and the copies of x and w it is passed "
        f"({2 * result['xbytes'] / MB:.1f} MB); "
        "*process peak RSS* = peak resident set size (VmHWM) of a fresh process that builds the "
        "problem and runs "
        "one adjoint call of that row only (interpreter, NumPy, compiled modules and problem "
        "included).",
        "",
    ] + hvp_table(result)
    with open(path, "w") as handle:
        handle.write("\n".join(text))


def _distribution_version(name):
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=256, help="grid size: an m x m grid")
    parser.add_argument("--steps", type=int, default=1000, help="Gauss-Seidel sweeps")
    parser.add_argument("--snapshots", type=int, default=10)
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="the loop to a tolerance: residual reduction factor")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement")
    parser.add_argument("--output", default=os.path.join(HERE, "CHECKPOINTING.md"))
    parser.add_argument("--rss-of", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.rss_of:
        rss_of(options.rss_of, options.m, options.steps, options.snapshots, options.tolerance)
        return 0
    start = time.perf_counter()
    result = measure(options.m, options.steps, options.snapshots, options.tolerance,
                     options.repeats,
                     lambda text: print(text, file=sys.stderr, flush=True))
    command = "python " + " ".join(shlex.quote(a) for a in
                                   [os.path.relpath(os.path.abspath(__file__))] + argv)
    print(table(result))
    write(options.output, result, command, time.perf_counter() - start)
    print(f"wrote {options.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
