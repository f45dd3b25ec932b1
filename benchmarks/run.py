"""Benchmark adsrc's compiled adjoints against the primal and against peers; write RESULTS.md.

    python benchmarks/run.py                 # grids 16x16 .. 1024x1024 (takes a while)
    python benchmarks/run.py --quick         # grids 16x16 .. 128x128, short timing budgets
    python benchmarks/run.py --sizes 16,64   # chosen grid sizes m (an m x m grid)
    python benchmarks/run.py --check         # self-check only: hand Numba adjoints vs finite
                                             # differences, adsrc vs adsrc.check_grads

For every kernel of ``adsrc.kernels`` and every 2-D Poisson 5-point CSR matrix (int32 indices)
it measures, as the median of several repeats after a warm-up (``time.perf_counter``):

* adsrc: the compiled primal ``f.primal(...)``, the compiled adjoint ``f.adjoint(...)`` (forward
  sweep + reverse sweep), their ratio and the tape's ``peak_bytes``;
* the hand-written Numba primal and adjoint (``peers/numba_peer.py``), their ratio: the
  reference for adsrc's adjoint/primal ratio.  These four are timed in turn, round after round,
  and their ratios are medians of the ratios within each round;
* the same gradient by JAX (``jax.jit(jax.grad(loss))``) and PyTorch autograd, as a multiple of
  adsrc's adjoint time, measured side by side in the same run;
* the largest relative difference between each peer's gradient and adsrc's (flagged, not fatal);

plus, per kernel, the first-call time of ``differentiate`` + ``adjoint`` (code generation and
compilation, into a fresh cache directory) and the cache-hit time (a second ``differentiate`` of
the same kernel in a fresh object, first adjoint call), in this process and in a new one.

A peer that is not installed is reported, not fatal (``pip install .[bench]``).  A measurement
whose single call is predicted (from the smaller sizes) to take longer than ``--limit`` seconds is
skipped and the table says so.  Timings are only ever reported, never asserted.
"""

import argparse
import compileall
import datetime
import gc
import importlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import other_tables  # noqa: E402
import problems  # noqa: E402
from peers import Case  # noqa: E402

PEER_MODULES = [("numba", "peers.numba_peer"), ("cython", "peers.cython_hand_peer"),
                ("jax", "peers.jax_peer"),
                ("torch", "peers.torch_peer")]
PEER_NAMES = {"numba": "Numba", "cython": "Cython hand", "jax": "JAX", "torch": "PyTorch"}
HAND = "numba"         # the peer whose hand-written adjoint is the reference, timed with adsrc
# the hand adjoints, timed in turn with adsrc: Numba's, and the same compiled by Cython
HANDS = (HAND, "cython")
MISMATCH_RTOL = 1e-8
FULL_SIZES = (16, 32, 64, 128, 256, 512, 1024)
QUICK_SIZES = (16, 32, 64, 128)


def _warmup_kernel(x):
    """A tiny kernel compiled first, so that building Cython's shared utility module and adsrc's
    runtime module (once per cache directory) is timed on its own and not charged to the first real
    kernel."""
    for i in range(len(x)):
        x[i] = 2.0 * x[i] * x[i]


def build_warmup_kernel(tool):
    """Differentiate ``_warmup_kernel`` and call its adjoint: this builds the support modules if
    the cache has none, and starts Cython in this process."""
    spec = problems.KernelSpec("_warmup_kernel", ("x",), ("x",), "x")
    f = tool.differentiate(_warmup_kernel, spec)
    f.adjoint(np.ones(4), x_bar=np.ones(4))


# ---------------------------------------------------------------------------------------------
# adsrc, with a fallback for a version without the Cython backend
# ---------------------------------------------------------------------------------------------

class Adsrc:
    def __init__(self, requested):
        import adsrc
        self.adsrc = adsrc
        self.requested = requested
        self.backend = None       # set by the first differentiate()
        self.has_backend_argument = True
        self.note = ""

    def differentiate(self, fn, spec):
        kwargs = dict(wrt=spec.wrt, outputs=(spec.output,))
        if not self.has_backend_argument:
            return self.adsrc.differentiate(fn, **kwargs)
        try:
            f = self.adsrc.differentiate(fn, backend=self.requested, **kwargs)
        except TypeError as exc:
            if "backend" not in str(exc):
                raise
            self.has_backend_argument = False
            self.backend = "python-fallback"
            self.note = ("this adsrc has no `backend=` argument (TypeError): the Python backend "
                         "was used, so 'primal' is the plain Python kernel")
            return self.adsrc.differentiate(fn, **kwargs)
        if self.backend != "python-fallback":
            self.backend = getattr(f, "backend", self.requested)
        return f

    @staticmethod
    def primal(f):
        return f.primal if hasattr(f, "primal") else f

    def fallback_after_build_failure(self, exc):
        self.note = (f"the {self.requested} backend failed to build ({type(exc).__name__}: "
                     f"{str(exc).splitlines()[0][:200]}); the Python backend was used")
        self.backend = "python-fallback"
        self.requested = "python"


def adsrc_cases(tool, f, spec, problem):
    """Cases for adsrc's compiled primal and adjoint, in adsrc's calling convention."""
    primal = tool.primal(f)

    def setup():
        args = problems.arguments(spec, problem)
        bars = {spec.output + "_bar": problems.placed(problem.w)}
        for name in spec.wrt:
            if name != spec.output:
                size = problem.nnz if name == "data" else problem.n if name in ("b", "x") \
                    else None
                bars[name + "_bar"] = None if size is None else problems.placed(np.zeros(size))
        bars = {k: v for k, v in bars.items() if v is not None}
        return args, bars

    def run(state):
        args, bars = state
        return f.adjoint(*args, **bars)

    def result(state, out):
        args, bars = state
        grads = dict(zip(spec.wrt, out))
        if "x" in spec.compared and "x" not in spec.wrt:
            grads["x"] = bars["x_bar"]
        for key in list(grads):
            if key == spec.scalar_param:
                grads[key] = float(grads[key])
            else:
                grads[key] = np.array(grads[key], copy=True)
        return grads

    return {
        "primal": Case(setup=lambda: problems.arguments(spec, problem),
                       run=lambda args: primal(*args),
                       result=problems.primal_result(spec)),
        "grad": Case(setup=setup, run=run, result=result),
    }


def kernel_function(name):
    import adsrc.kernels
    return getattr(adsrc.kernels, name)


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3      # mallopt parameters (glibc's malloc.h)
HEAP_BLOCKS_UP_TO = 32 * 1024 * 1024             # glibc's largest mmap threshold on 64 bits


def steady_allocator():
    """Make glibc's malloc serve every block up to 32 MiB from its heap and never give the heap
    back, as it ends up doing anyway in a process that calls the same adjoint over and over.

    By default its mmap threshold moves with what was freed last: the tapes, iterate copies and
    gradients of one call (0.6-40 MB here) then come from fresh memory, which page-faults and
    is zeroed on first touch, or from the warm heap, depending on what the previous calls
    allocated.  Timed in turn with other kernels, a call's time moved by up to 50% that way
    (the Cython hand adjoint of weighted Jacobi at 128x128: 1.1 to 1.8 ms).  Blocks above
    32 MiB stay mmapped (glibc's limit), for every tool alike.  Returns what was done, for the
    table."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return "default (no glibc mallopt here)"
    if mallopt(M_MMAP_THRESHOLD, HEAP_BLOCKS_UP_TO) and mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1):
        return ("glibc malloc: blocks up to 32 MiB from the heap, which is never trimmed "
                "(mallopt; see steady_allocator in run.py)")
    return "default (mallopt refused)"

class Measurement:
    def __init__(self, median, repeats, result=None, compile_time=None):
        self.median = median
        self.repeats = repeats
        self.result = result
        self.compile_time = compile_time


class Skipped:
    def __init__(self, reason):
        self.reason = reason


def measure_in_turn(cases, budget, min_rounds=3, max_rounds=30, single_call=None):
    """Time several cases in turn, round after round, after a warm-up call of each (whose
    result is kept): a change of the machine's speed during the measurement (another process,
    the clock, the memory) then hits every case alike, and a ratio taken within each round
    (:func:`round_ratio`) cancels most of it.  The first case of a round moves by one every
    round, so no case always runs first.

    ``cases`` maps a key to a :class:`Case`.  Rounds go on until ``budget`` seconds of calls
    per case are spent (at least ``min_rounds``, at most ``max_rounds``).  A case whose warm-up
    call takes longer than ``single_call`` seconds is timed once: that call is its sample.
    Returns ``(measurements, rounds, failures)``: a :class:`Measurement` per key, one
    ``{key: seconds}`` per round, and the exception of each case that failed (left out)."""
    measurements, results, compile_times, failures = {}, {}, {}, {}
    for key, case in cases.items():
        try:
            compile_time = None
            if case.compile is not None:
                t0 = time.perf_counter()
                case.compile()
                compile_time = time.perf_counter() - t0
            state = case.setup()
            t0 = time.perf_counter()
            out = case.run(state)
            first = time.perf_counter() - t0
            results[key] = case.result(state, out) if case.result else None
            del state, out
        except Exception as exc:                        # noqa: BLE001 - returned
            failures[key] = exc
            continue
        compile_times[key] = compile_time
        if single_call is not None and first > single_call:
            measurements[key] = Measurement(first, 1, results[key], compile_time)
    timed = [key for key in cases if key in results and key not in measurements]
    rounds, spent = [], 0.0
    while timed and len(rounds) < max_rounds and (len(rounds) < min_rounds
                                                  or spent < budget * len(timed)):
        shift = len(rounds) % len(timed)
        sample = {}
        for key in timed[shift:] + timed[:shift]:
            state = cases[key].setup()
            t0 = time.perf_counter()
            try:
                cases[key].run(state)
            except Exception as exc:                    # noqa: BLE001 - returned
                failures[key] = exc
                continue
            sample[key] = time.perf_counter() - t0
            del state
            spent += sample[key]
        timed = [key for key in timed if key not in failures]
        rounds.append(sample)
    for key in timed:
        samples = [sample[key] for sample in rounds]
        measurements[key] = Measurement(statistics.median(samples), len(samples), results[key],
                                        compile_times[key])
    return measurements, rounds, failures


def measure(case, budget, min_repeats=3, max_repeats=30, single_call=None):
    """Median of repeated timed calls of one case after a warm-up call (whose result is kept);
    its exception, if it fails."""
    measurements, _, failures = measure_in_turn({"case": case}, budget, min_repeats,
                                                max_repeats, single_call)
    if failures:
        raise failures["case"]
    return measurements["case"]


class Predictor:
    """Predicts one call's time at the next size from the sizes already measured."""

    def __init__(self, limit):
        self.limit = limit
        self.history = {}

    def record(self, key, n, seconds):
        self.history.setdefault(key, []).append((n, seconds))

    def predict(self, key, n):
        points = self.history.get(key, [])
        if not points:
            return None
        n1, t1 = points[-1]
        exponent = 2.0
        if len(points) >= 2:
            n0, t0 = points[-2]
            if t0 > 0 and n1 > n0:
                exponent = max(1.0, np.log(t1 / t0) / np.log(n1 / n0))
        return t1 * (n / n1) ** exponent

    def should_skip(self, key, n):
        guess = self.predict(key, n)
        if guess is not None and guess > self.limit:
            return Skipped(f"skipped: ~{fmt_seconds(guess)} predicted > {self.limit:g} s")
        return None


def round_ratio(row, numerator, denominator):
    """The median over the rounds of ``numerator / denominator``, each a key or a pair of keys
    ``(a, b)`` standing for ``a / b``, from times taken in the same round; the ratio of the
    medians where the two were not timed in turn (a single timed call)."""
    def value(times, part):
        if isinstance(part, tuple):
            top, bottom = value(times, part[0]), value(times, part[1])
            return ratio(top, bottom)
        return times.get(part) if times is not None else median_of(row, part)

    ratios = [ratio(value(sample, numerator), value(sample, denominator))
              for sample in row.get("rounds", ())]
    ratios = [r for r in ratios if r is not None]
    if ratios:
        return statistics.median(ratios)
    return ratio(value(None, numerator), value(None, denominator))


# ---------------------------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------------------------

def fmt_seconds(seconds):
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.1f} s" if seconds < 100 else f"{seconds:.0f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def fmt_ms(seconds):
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.4f}" if ms >= 0.01 else f"{ms:.2g}"


def fmt_ratio(value):
    if value is None:
        return "-"
    return f"{value:.3g}"


def fmt_bytes(count):
    if count is None:
        return "-"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} B"


def fmt_diff(value):
    if value is None:
        return "-"
    text = f"{value:.1e}"
    return f"**{text} MISMATCH**" if not value <= MISMATCH_RTOL else text


# ---------------------------------------------------------------------------------------------
# machine and versions
# ---------------------------------------------------------------------------------------------

def cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def nproc():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def memory_total():
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal"):
                    return f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    except OSError:
        pass
    return "unknown"


def version_of(module):
    try:
        return importlib.import_module(module).__version__
    except Exception:                                   # noqa: BLE001 - only reported
        return "not installed"


def git_revision():
    root = os.path.dirname(HERE)
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                             capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "adsrc", "kernels"],
                               cwd=root, text=True, capture_output=True).stdout.strip()
        return rev + (" (adsrc/ or kernels/ modified, uncommitted)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ---------------------------------------------------------------------------------------------
# the self-check
# ---------------------------------------------------------------------------------------------

def self_check(peers, tool, out=print, m=5, sweeps=3):
    """Hand adjoints (Numba's, and Cython's where there is one) against finite differences;
    adsrc against adsrc.check_grads.  Returns (ok, lines)."""
    lines = []
    ok = True

    def say(text):
        lines.append(text)
        out(text)

    problem = problems.make_problem(m, sweeps=sweeps)
    if HAND not in peers:
        say("numba is not installed: its hand adjoints were not checked")
    for spec in problems.SPECS:
        for key in HANDS:
            if key not in peers:
                continue
            try:
                err = peers[key].verify(spec, problem)
                if err is not None:
                    say(f"{PEER_NAMES[key]} hand adjoint {spec.name}: finite differences "
                        f"agree (worst relative error {err:.1e})")
            except AssertionError as exc:
                ok = False
                say(f"FAIL {exc}")
        if tool is not None:
            try:
                f = tool.differentiate(kernel_function(spec.name), spec)
                tool.adsrc.check_grads(f, problems.arguments(spec, problem), spec.wrt,
                                       (spec.output,))
                say(f"adsrc ({tool.backend}) {spec.name}: adsrc.check_grads passes")
            except AssertionError as exc:
                ok = False
                say(f"FAIL adsrc {spec.name}: {str(exc).splitlines()[0]}")
            except Exception as exc:                    # noqa: BLE001 - reported
                ok = False
                say(f"FAIL adsrc {spec.name}: {type(exc).__name__}: {exc}")
    return ok, lines


# ---------------------------------------------------------------------------------------------
# compile / cache timings
# ---------------------------------------------------------------------------------------------

def first_call_times(tool, specs, problem, log):
    """Per kernel: (first call, in-process cache hit) of differentiate + first adjoint."""
    times = {}
    for spec in specs:
        fn = kernel_function(spec.name)
        row = {}
        try:
            t0 = time.perf_counter()
            f = tool.differentiate(fn, spec)
            case = adsrc_cases(tool, f, spec, problem)["grad"]
            state = case.setup()
            case.run(state)
            row["first"] = time.perf_counter() - t0
            hits = []
            for _ in range(3):          # median of 3: a stray gc pass is not a cache miss
                state = case.setup()
                gc.collect()
                t0 = time.perf_counter()
                f2 = tool.differentiate(fn, spec)
                case = adsrc_cases(tool, f2, spec, problem)["grad"]
                case.run(state)
                hits.append(time.perf_counter() - t0)
            row["hit"] = statistics.median(hits)
        except Exception as exc:                        # noqa: BLE001 - reported
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            log(f"  {spec.name}: FAILED {row['error']}")
            traceback.print_exc()
        else:
            log(f"  {spec.name}: first call {fmt_seconds(row['first'])}, "
                f"cache hit {fmt_seconds(row['hit'])}")
        times[spec.name] = row
    return times


def probe_cache(names, sweeps, backend):
    """--probe-cache: run in a new process; prints JSON {kernel: seconds} of differentiate +
    first adjoint call with the compiled module already on disk."""
    tool = Adsrc(backend)
    problem = problems.make_problem(QUICK_SIZES[0], sweeps=sweeps)
    out = {}
    for name in names:
        spec = problems.SPEC_BY_NAME[name]
        fn = kernel_function(name)
        try:
            t0 = time.perf_counter()
            f = tool.differentiate(fn, spec)
            case = adsrc_cases(tool, f, spec, problem)["grad"]
            case.run(case.setup())
            out[name] = time.perf_counter() - t0
        except Exception as exc:                        # noqa: BLE001 - reported
            out[name] = f"{type(exc).__name__}: {exc}"
    print("PROBE " + json.dumps(out))


def compile_adsrc_bytecode():
    """adsrc's modules compiled to bytecode, as ``pip install`` leaves them: a new process then
    imports the modules a call loads lazily (``adsrc.checkpointed_kernels``,
    ``adsrc.rules.linalg``...) from their bytecode, where it would compile their source, every
    time, in an environment that sets ``PYTHONDONTWRITEBYTECODE`` (as this project's sandbox
    does), and count that compilation as the call's."""
    import adsrc
    compileall.compile_dir(os.path.dirname(adsrc.__file__), quiet=1)


def new_process_cache_hits(names, sweeps, backend, log):
    return _probe(names, sweeps, backend, os.environ, log)


def new_process_first_calls(names, sweeps, backend, source, log):
    """Per kernel, the first call in a new process whose cache holds only the modules built
    once per cache (Cython's shared utility module and adsrc's runtime module, ``_adsrc_*``, copied
    from the cache directory ``source``): what a user's first kernel of a session costs,
    Cython's and setuptools' start-up included, which the in-process first calls share with the
    warm-up kernel."""
    support = [name for name in os.listdir(source) if name.startswith("_adsrc_")]
    out = {}
    for name in names:
        directory = tempfile.mkdtemp(prefix="adsrc-bench-first-")
        try:
            for item in support:
                shutil.copy2(os.path.join(source, item), os.path.join(directory, item))
            out.update(_probe([name], sweeps, backend,
                              dict(os.environ, ADSRC_CACHE_DIR=directory), log))
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    return out


def _probe(names, sweeps, backend, env, log):
    """Run --probe-cache in a new process: {kernel: seconds of differentiate + first adjoint}."""
    cmd = [sys.executable, os.path.abspath(__file__), "--probe-cache", ",".join(names),
           "--sweeps", str(sweeps), "--backend", backend]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    except subprocess.TimeoutExpired:
        log("  new-process probe timed out")
        return {}
    for line in done.stdout.splitlines():
        if line.startswith("PROBE "):
            return json.loads(line[len("PROBE "):])
    log("  new-process probe failed:\n" + done.stderr[-2000:])
    return {}


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------

def load_peers(selected, log, threads="1"):
    os.environ["ADSRC_BENCH_PEER_THREADS"] = str(threads)
    peers, versions = {}, {}
    for key, module_name in PEER_MODULES:
        if key not in selected:
            versions[key] = "not selected (--peers)"
            continue
        try:
            module = importlib.import_module(module_name)
            versions[key] = module.load()
            peers[key] = module
        except Exception as exc:                        # noqa: BLE001 - a missing peer
            versions[key] = f"not available ({type(exc).__name__}: {str(exc)[:120]})"
        log(f"peer {PEER_NAMES[key]}: {versions[key]}")
    return peers, versions


def measure_with_hand_adjoint(tool, spec, problem, peers, options, predictor, spent, row,
                              log):
    """adsrc's compiled primal and adjoint, and the Numba hand-written primal and adjoint
    (when Numba is installed), timed in turn round after round (:func:`measure_in_turn`), so
    that the ratio of the two adjoint/primal ratios is taken within each round.  Fills
    ``row``; returns the differentiated kernel, or None when adsrc failed (``row["adsrc_error"]``
    says how)."""
    group, owners = {}, {}
    f = None
    try:
        f = tool.differentiate(kernel_function(spec.name), spec)
        for what, case in adsrc_cases(tool, f, spec, problem).items():
            group["adsrc_" + what], owners["adsrc_" + what] = case, ("adsrc", what)
    except Exception as exc:                            # noqa: BLE001 - reported in the table
        adsrc_failed(row, exc, log, spec)
    for peer in HANDS:
        if peer not in peers:
            continue
        try:
            cases = peers[peer].build(spec, problem)
        except Exception as exc:                        # noqa: BLE001 - reported
            row[peer + "_error"] = f"{type(exc).__name__}: {exc}"
            cases = None
        if cases is None:
            row.setdefault(peer + "_error", "no implementation")
        for what, case in (cases or {}).items():
            group[f"{peer}_{what}"], owners[f"{peer}_{what}"] = case, (peer, what)
    for key in list(group):
        skip = predictor.should_skip(owners[key] + (spec.name,), problem.n)
        if skip:
            row[key] = skip
            del group[key]
    t0 = time.perf_counter()
    measurements, rounds, failures = measure_in_turn(
        group, options.budget, single_call=options.single, max_rounds=options.max_repeats)
    elapsed = time.perf_counter() - t0
    timed = {key: sum(sample.get(key, 0.0) for sample in rounds) for key in group}
    total = sum(timed.values()) or 1.0
    for key, seconds in timed.items():         # the whole time, shared out as the calls took it
        owner = owners[key][0]
        spent[owner] = spent.get(owner, 0.0) + elapsed * seconds / total
    row["rounds"] = rounds
    for key, meas in measurements.items():
        predictor.record(owners[key] + (spec.name,), problem.n, meas.median)
        row[key] = meas
    for key, exc in failures.items():
        if owners[key][0] == "adsrc":
            adsrc_failed(row, exc, log, spec)
        else:
            row[key] = Skipped(f"failed: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:200]}")
    if isinstance(row.get("adsrc_grad"), Measurement):
        row["tape"] = f.adjoint.last_tape_stats
        for peer in HANDS:
            compare_gradients(row, peer, row["adsrc_grad"].result, spec)
    return None if "adsrc_error" in row else f


def adsrc_failed(row, exc, log, spec):
    text = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    row["adsrc_error"] = text
    log(f"  {spec.name}: adsrc FAILED: {text}")
    traceback.print_exception(exc)


def compare_gradients(row, key, reference, spec):
    """The largest relative difference of a peer's gradient from adsrc's, in ``row``."""
    meas = row.get(key + "_grad")
    if reference is not None and isinstance(meas, Measurement) and meas.result is not None:
        row[key + "_diff"] = problems.max_rel_diff(reference, meas.result, spec.compared)


def check_primal(row):
    """adsrc's compiled primal output against the Numba primal's, in ``row``."""
    mine, theirs = row.get("adsrc_primal"), row.get(HAND + "_primal")
    if isinstance(mine, Measurement) and isinstance(theirs, Measurement) \
            and mine.result is not None and theirs.result is not None:
        row["primal_diff"] = problems.max_rel_diff(mine.result, theirs.result, ("out",))


def run(options, log):
    started = time.perf_counter()
    sizes = options.sizes
    specs = [problems.SPEC_BY_NAME[name] for name in options.kernels]
    cache_dir = None
    if not options.keep_cache:
        cache_dir = tempfile.mkdtemp(prefix="adsrc-bench-cache-")
        os.environ["ADSRC_CACHE_DIR"] = cache_dir
    tool = Adsrc(options.backend)

    # first calls and cache hits, at the smallest size
    small = problems.make_problem(sizes[0], sweeps=options.sweeps)
    log("first calls (generation + compilation) and cache hits")
    warm = {}
    try:
        t0 = time.perf_counter()
        build_warmup_kernel(tool)
        warm["seconds"] = time.perf_counter() - t0
        log(f"  shared module + tiny kernel: {fmt_seconds(warm['seconds'])} "
            f"(backend {tool.backend})")
    except Exception as exc:                            # noqa: BLE001 - reported, then fallback
        warm["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        log(f"  warm-up kernel failed: {warm['error']}")
        if tool.backend not in ("python", "python-fallback"):
            tool.fallback_after_build_failure(exc)
    first_calls = first_call_times(tool, specs, small, log)
    if tool.backend not in ("python", "python-fallback"):
        compile_adsrc_bytecode()
        hits = new_process_cache_hits([s.name for s in specs], options.sweeps, tool.requested,
                                      log)
        for name, value in hits.items():
            first_calls.setdefault(name, {})["process_hit"] = value
        if cache_dir is not None:       # (with --keep-cache there are no first calls)
            firsts = new_process_first_calls([s.name for s in specs], options.sweeps,
                                             tool.requested, cache_dir, log)
            for name, value in firsts.items():
                first_calls.setdefault(name, {})["process_first"] = value
                log(f"  {name}: first call in a new process {_probed(firsts, name)}")

    # after the first calls: loading the Cython hand peer compiles, and would build the shared
    # utility module the warm-up kernel is there to time
    peers, peer_versions = load_peers(options.peers, log, options.peer_threads)
    check_ok, check_lines = True, []
    hands = {key: peers[key] for key in HANDS if key in peers}
    if hands:
        log("self-check: hand adjoints against finite differences")
        check_ok, check_lines = self_check(hands, None, out=log)

    predictor = Predictor(options.limit)
    spent = {}
    results = {spec.name: {} for spec in specs}
    broken = {}          # kernel -> error text (adsrc failed: no reference gradient)
    for m in sizes:
        problem = problems.make_problem(m, sweeps=options.sweeps)
        log(f"grid {m}x{m}: n = {problem.n}, nnz = {problem.nnz}")
        for spec in specs:
            row = results[spec.name].setdefault(m, {"n": problem.n, "nnz": problem.nnz})
            gc.collect()
            f = measure_with_hand_adjoint(tool, spec, problem, peers, options, predictor,
                                          spent, row, log)
            if f is None:
                broken.setdefault(spec.name, []).append((m, row["adsrc_error"]))
            reference = row.get("adsrc_grad")
            reference = reference.result if isinstance(reference, Measurement) else None
            check_primal(row)
            # the other peers, one after the other
            for key, module in peers.items():
                if key in HANDS:
                    continue
                try:
                    cases = module.build(spec, problem)
                except Exception as exc:                # noqa: BLE001 - reported
                    row[key + "_error"] = f"{type(exc).__name__}: {exc}"
                    continue
                if cases is None:
                    row[key + "_error"] = "no implementation"
                    continue
                for what, case in cases.items():
                    pkey = (key, what, spec.name)
                    skip = predictor.should_skip(pkey, problem.n)
                    if skip:
                        row[f"{key}_{what}"] = skip
                        continue
                    t0 = time.perf_counter()
                    try:
                        meas = measure(case, options.budget, single_call=options.single,
                                       max_repeats=options.max_repeats)
                    except Exception as exc:            # noqa: BLE001 - reported
                        row[f"{key}_{what}"] = Skipped(
                            f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
                        continue
                    finally:
                        spent[key] = spent.get(key, 0.0) + time.perf_counter() - t0
                    predictor.record(pkey, problem.n, meas.median)
                    row[f"{key}_{what}"] = meas
                    if what == "grad":
                        compare_gradients(row, key, reference, spec)
                del cases
            log("  " + summary_line(spec, row, peers))
        del problem
        gc.collect()

    elapsed = time.perf_counter() - started
    log("time spent measuring: " + ", ".join(f"{k} {fmt_seconds(v)}" for k, v in spent.items()))
    if cache_dir is not None:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return dict(results=results, first_calls=first_calls, warm=warm, tool=tool,
                peer_versions=peer_versions, peers=peers, check_ok=check_ok,
                check_lines=check_lines, elapsed=elapsed, broken=broken, specs=specs,
                spent=spent)


def median_of(row, key):
    value = row.get(key)
    return value.median if isinstance(value, Measurement) else None


def ratio(a, b):
    return a / b if a is not None and b is not None and b > 0 else None


def hand_ratios(row, peer=HAND):
    """adsrc's adjoint/primal, the ``peer``'s hand adjoint's, and the first over the second:
    medians of the ratios within each round (:func:`round_ratio`)."""
    own = round_ratio(row, "adsrc_grad", "adsrc_primal")
    hand = round_ratio(row, peer + "_grad", peer + "_primal")
    versus = round_ratio(row, ("adsrc_grad", "adsrc_primal"), (peer + "_grad", peer + "_primal"))
    return own, hand, versus


def summary_line(spec, row, peers):
    parts = [f"{spec.name:24s}"]
    p, a = median_of(row, "adsrc_primal"), median_of(row, "adsrc_grad")
    own, hand, versus = hand_ratios(row)
    parts.append(f"adsrc {fmt_seconds(p)} / {fmt_seconds(a)} (x{fmt_ratio(own)})")
    if versus is not None:
        parts.append(f"÷ hand {fmt_ratio(versus)}")
    versus_cython = hand_ratios(row, "cython")[2]
    if versus_cython is not None:
        parts.append(f"÷ Cython hand {fmt_ratio(versus_cython)}")
    for key in peers:
        g = median_of(row, key + "_grad")
        diff = row.get(key + "_diff")
        text = f"{PEER_NAMES[key]} {fmt_seconds(g)}"
        if diff is not None:
            text += f" d={diff:.0e}"
        parts.append(text)
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# RESULTS.md
# ---------------------------------------------------------------------------------------------

def cell_time(row, key):
    value = row.get(key)
    if isinstance(value, Measurement):
        return fmt_ms(value.median)
    if isinstance(value, Skipped):
        return value.reason
    error = row.get(key.split("_")[0] + "_error")
    return error or "-"


def peer_multiple(row, key, adsrc_grad):
    value = row.get(key)
    if isinstance(value, Measurement):
        multiple = ratio(value.median, adsrc_grad)
        return fmt_ms(value.median) + (f" (×{fmt_ratio(multiple)})" if multiple else "")
    if isinstance(value, Skipped):
        return value.reason
    error = row.get(key.split("_")[0] + "_error")
    return error or "not installed"


def write_results(path, options, outcome, command):
    tool = outcome["tool"]
    peers = outcome["peers"]
    versions = outcome["peer_versions"]
    lines = []
    add = lines.append
    add("# adsrc benchmark results")
    add("")
    add(f"Command: `{command}`  ")
    spent = ", ".join(f"{PEER_NAMES.get(k, k)} {fmt_seconds(v)}"
                      for k, v in outcome["spent"].items())
    add(f"Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; whole run: "
        f"{fmt_seconds(outcome['elapsed'])} (of which timed measurements, compilation "
        f"included: {spent})  ")
    add(f"Machine: {nproc()} CPUs (nproc), {cpu_model()}, {memory_total()} RAM, "
        f"{platform.system()} {platform.release()} {platform.machine()}  ")
    add(f"Python {platform.python_version()}, NumPy {np.__version__}, "
        f"SciPy {version_of('scipy')}, Cython {version_of('Cython')}, "
        f"adsrc {version_of('adsrc')} at git {git_revision()}  ")
    add(f"Peers: JAX {versions.get('jax')}, PyTorch {versions.get('torch')}, "
        f"Numba {versions.get('numba')}  ")
    backend = tool.backend or tool.requested
    threads_text = ("their default thread pools" if options.peer_threads == "default" else
                    f"{options.peer_threads} thread(s) (`--peer-threads`; XLA_FLAGS "
                    "intra_op_parallelism_threads, torch.set_num_threads)")
    add(f"adsrc backend: **{backend}**" + (f" ({tool.note})" if tool.note else ""))
    add("")
    add("Settings: every kernel runs on the 2-D Poisson 5-point matrix of an m x m grid "
        f"(n = m², CSR, int32 indices), {options.sweeps} sweeps/iterations; the loss is "
        "L = <w, out_final> for a fixed random w (out = x, or y for the products). Times are "
        "medians of repeated calls after a warm-up call (`time.perf_counter`; at least 3 "
        f"repeats and at least {options.budget:g} s of calls, at most {options.max_repeats}; "
        f"a call slower than {options.single:g} s is timed once). adsrc's primal and adjoint "
        "and Numba's are timed in turn, round after round, and every ratio of their times is "
        "the median over the rounds of the ratio within a round, so that a change of the "
        "machine's speed during a measurement cancels out. Allocator: "
        f"{outcome.get('allocator', 'default')}. The arrays a timed call writes start at a "
        "random cache-line offset within a page, drawn anew every round "
        "(`problems.placed`). A measurement predicted from "
        "the smaller grids "
        f"to take more than {options.limit:g} s per call is skipped. adsrc and Numba run on one "
        f"thread; JAX and PyTorch on {threads_text}. Timings are informative only: "
        "no test asserts them.")
    add("")
    add("Columns: *primal* = adsrc's compiled primal `f.primal(...)`; *adjoint* = "
        "`f.adjoint(...)` (forward sweep with taping + reverse sweep); *tape* = "
        "`f.adjoint.last_tape_stats.peak_bytes` (*hand tape*: what the Numba hand adjoint "
        "stores); *Numba* = hand-written `@numba.njit` primal and adjoint of the same kernel "
        "(`benchmarks/peers/numba_peer.py`); *adsrc ÷ hand* = (adsrc adjoint/primal) ÷ (Numba "
        "adjoint/primal); *primal/adjoint time ÷ Numba's* = adsrc's compiled primal and adjoint "
        "times divided by Numba's (read *adsrc ÷ hand* with them: where adsrc's primal is "
        "faster than Numba's, the same adjoint code gives a larger ratio); *Cython hand* = "
        "the same hand adjoints of the Jacobi, SpMV and triangular-solve kernels written in Cython "
        "(`benchmarks/peers/hand_adjoints.pyx`), compiled with adsrc's directives and C flags, "
        "and *adsrc ÷ Cython hand* = (adsrc adjoint/primal) ÷ (its adjoint/primal): the same "
        "comparison with the compiler held equal; *JAX*, *PyTorch* = one gradient of the same "
        "loss, ms, with "
        "(×k) = k times adsrc's adjoint time; *max rel diff* = adsrc's compiled primal "
        "output against Numba's (*primal*), then max over gradients of "
        "‖g_peer − g_adsrc‖∞ / ‖g_adsrc‖∞ for Numba / Cython hand / JAX / PyTorch "
        f"(above {MISMATCH_RTOL:g} it is flagged MISMATCH). All times in ms unless marked.")
    add("")
    if outcome["check_lines"]:
        status = "all pass" if outcome["check_ok"] else "**FAILURES**"
        worst = [ln for ln in outcome["check_lines"] if "FAIL" in ln]
        add(f"Self-check (hand Numba adjoints against finite differences on a 5x5 grid, "
            f"3 sweeps): {status}." + ("" if not worst else " " + "; ".join(worst)))
        add("")
    if outcome["broken"]:
        add("## adsrc failures")
        add("")
        for name, items in outcome["broken"].items():
            for m, text in items:
                add(f"- `{name}` on {m}x{m}: {text}")
        add("")

    # summary at the largest grid each kernel reached
    add("## Summary (largest grid measured for adsrc)")
    add("")
    head = ["kernel", "grid", "adjoint/primal", "Numba hand adjoint/primal", "adsrc ÷ hand",
            "primal time ÷ Numba's", "adjoint time ÷ Numba's", "adsrc ÷ Cython hand",
            "JAX grad (× adsrc)", "PyTorch grad (× adsrc)", "first call",
            "first call, new process", "cache hit", "cache hit, new process"]
    add("| " + " | ".join(head) + " |")
    add("|" + "---|" * len(head))
    for spec in outcome["specs"]:
        rows = outcome["results"][spec.name]
        done = [m for m, r in rows.items() if isinstance(r.get("adsrc_grad"), Measurement)]
        fc = outcome["first_calls"].get(spec.name, {})
        cache = [fmt_seconds(fc.get("first")) if "first" in fc else fc.get("error", "-"),
                 _probed(fc, "process_first"), fmt_seconds(fc.get("hit")),
                 _probed(fc, "process_hit")]
        if not done:
            add(f"| {spec.name} | - | failed | | | | | | | | " + " | ".join(cache) + " |")
            continue
        m = max(done)
        r = rows[m]
        a = median_of(r, "adsrc_grad")
        own, hand, versus = hand_ratios(r)
        cells = {}
        for key in ("jax", "torch"):
            if key not in peers:
                cells[key] = "not installed"
            elif median_of(r, key + "_grad"):
                cells[key] = f"×{fmt_ratio(ratio(median_of(r, key + '_grad'), a))}"
            else:
                cells[key] = last_multiple(rows, key)
        hand_cell = fmt_ratio(hand) if "numba" in peers else "not installed"
        add(f"| {spec.name} | {m}x{m} | {fmt_ratio(own)} | {hand_cell} | "
            f"{fmt_ratio(versus)} | "
            f"{fmt_ratio(round_ratio(r, 'adsrc_primal', HAND + '_primal'))} | "
            f"{fmt_ratio(round_ratio(r, 'adsrc_grad', HAND + '_grad'))} | "
            f"{hand_cell_of(r, peers, 'cython')} | {cells['jax']} | {cells['torch']} | "
            + " | ".join(cache) + " |")
    add("")
    if "seconds" in outcome["warm"]:
        compiled = "python" not in (tool.backend or "")
        built = ("(code generation + Cython build); Cython's shared utility module and adsrc's "
                 "runtime module were built before, once, with a tiny kernel: " if compiled else
                 "(code generation only: the Python backend compiles nothing); a tiny kernel "
                 "differentiated first took ")
        add(f"*first call* = `differentiate(...)` + first `adjoint(...)` on the "
            f"{options.sizes[0]}x{options.sizes[0]} grid, with an empty cache directory "
            f"{built}{fmt_seconds(outcome['warm']['seconds'])}. "
            "*cache hit* = a second `differentiate(...)` of the same kernel (a fresh object) "
            "and its first `adjoint(...)` in the same process (median of 3); *new process* = the "
            "same in a new Python process (one call): for the first call, a process of its own "
            "per kernel, with a cache holding only the shared utility and runtime modules "
            "(Cython's and setuptools' start-up is then part of the call); for the cache hit, "
            "the compiled module found on disk; adsrc's own modules compiled to bytecode "
            "beforehand, as an installed package has them (`compile_adsrc_bytecode`).")
    elif "error" in outcome["warm"]:
        add(f"Warm-up kernel failed: {outcome['warm']['error']}")
    add("")

    # one table per kernel
    for spec in outcome["specs"]:
        rows = outcome["results"][spec.name]
        scalar = f", {spec.scalar_param}" if spec.scalar_param else ""
        wrt = ", ".join(spec.wrt)
        add(f"## {spec.name}")
        add("")
        add(f"wrt ({wrt}), output {spec.output}; gradients compared: "
            f"{', '.join(spec.compared)}{' (scalar ' + spec.scalar_param + ')' if scalar else ''}")
        add("")
        head = ["grid", "n", "nnz", "primal", "adjoint", "adj/primal", "tape", "hand tape",
                "Numba primal", "Numba adjoint", "Numba adj/primal", "adsrc ÷ hand",
                "Cython hand adj/primal", "adsrc ÷ Cython hand", "JAX grad", "PyTorch grad",
                "max rel diff: primal / Numba / Cython hand / JAX / PyTorch"]
        add("| " + " | ".join(head) + " |")
        add("|" + "---|" * len(head))
        for m in sorted(rows):
            r = rows[m]
            a = median_of(r, "adsrc_grad")
            own, hand, versus = hand_ratios(r)
            tape = r.get("tape")
            if "adsrc_error" in r:
                cells_adsrc = [f"FAILED: {r['adsrc_error']}", "", "", ""]
            else:
                cells_adsrc = [cell_time(r, "adsrc_primal"), cell_time(r, "adsrc_grad"),
                               fmt_ratio(own), fmt_bytes(tape.peak_bytes) if tape else "-"]
            hand_tape = None
            if "numba" in peers:
                hand_tape = peers["numba"].tape_bytes(spec, r["n"], options.sweeps)
            diffs = " / ".join(fmt_diff(r.get(k + "_diff")) if k == "primal" or k in peers
                               else "n/a" for k in ("primal", *PEER_NAMES))
            add("| " + " | ".join([
                f"{m}x{m}", str(r["n"]), str(r["nnz"]), *cells_adsrc,
                fmt_bytes(hand_tape) if hand_tape is not None else "-",
                cell_time(r, "numba_primal") if "numba" in peers else "not installed",
                cell_time(r, "numba_grad") if "numba" in peers else "not installed",
                fmt_ratio(hand), fmt_ratio(versus),
                hand_cell_of(r, peers, "cython", 1), hand_cell_of(r, peers, "cython"),
                peer_multiple(r, "jax_grad", a) if "jax" in peers else "not installed",
                peer_multiple(r, "torch_grad", a) if "torch" in peers else "not installed",
                diffs]) + " |")
        compile_times = [(m, rows[m]["jax_grad"].compile_time) for m in sorted(rows)
                         if isinstance(rows[m].get("jax_grad"), Measurement)
                         and rows[m]["jax_grad"].compile_time is not None]
        if compile_times:
            add("")
            add("JAX `jit` compile time (not included above): " + ", ".join(
                f"{m}x{m} {fmt_seconds(t)}" for m, t in compile_times) + ".")
        add("")
    with open(path, "w") as handle:
        handle.write("\n".join(lines))


def _probed(first_calls, key):
    """A new-process time (seconds, or the probe's error text) as a cell."""
    value = first_calls.get(key, "-")
    return fmt_seconds(value) if isinstance(value, float) else str(value)


def hand_cell_of(row, peers, peer, which=2):
    """A cell of a hand adjoint's ratios (:func:`hand_ratios`: 1 = its adjoint/primal, 2 =
    adsrc's ratio over it), or why there is none."""
    if peer not in peers:
        return "not installed"
    value = hand_ratios(row, peer)[which]
    return fmt_ratio(value) if value is not None else row.get(peer + "_error", "-")


def last_multiple(rows, key):
    """For the summary: the peer's multiple at the largest grid where both ran."""
    for m in sorted(rows, reverse=True):
        a = median_of(rows[m], "adsrc_grad")
        g = median_of(rows[m], key + "_grad")
        if a and g:
            return f"×{fmt_ratio(g / a)} at {m}x{m}"
    if any(isinstance(rows[m].get(key + "_grad"), Skipped) for m in rows):
        return "skipped"
    return "-"


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------

def names(text):
    """A comma-separated command-line list, as a tuple of its items."""
    return tuple(item for item in text.split(",") if item)


def sizes(text):
    """A comma-separated list of grid sizes m, as a tuple of ints."""
    return tuple(int(item) for item in names(text))


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="grids up to 128x128, short timing budgets, a 2 s limit per call "
                             "(a minute and a half or so)")
    parser.add_argument("--sizes", type=sizes,
                        help="grid sizes m, comma separated (default 16..1024; quick 16..128)")
    parser.add_argument("--sweeps", type=int, default=5,
                        help="sweeps / iterations of every iterative kernel (default 5)")
    parser.add_argument("--kernels", type=names,
                        default=tuple(spec.name for spec in problems.SPECS),
                        help="kernels to run, comma separated (default: all)")
    parser.add_argument("--peers", type=names,
                        default=tuple(PEER_NAMES),
                        help="peers to run: numba,cython,jax,torch (default: all that are "
                             "installed; cython = the hand adjoints of peers/hand_adjoints.pyx)")
    parser.add_argument("--backend", default="cython", help="adsrc backend (default cython)")
    parser.add_argument("--peer-threads", default="1",
                        help="threads for JAX and PyTorch: a number, or 'default' for their own "
                             "pools (default 1, like adsrc and Numba)")
    parser.add_argument("--limit", type=float,
                        help="skip a measurement predicted to take longer than this many seconds "
                             "per call (default 60; quick 2)")
    parser.add_argument("--budget", type=float,
                        help="seconds of repeated calls per measurement (default 1; quick 0.05)")
    parser.add_argument("--single", type=float,
                        help="a call slower than this is timed once (default 5 s; quick 0.25 s)")
    parser.add_argument("--keep-cache", action="store_true",
                        help="use adsrc's normal cache directory instead of a fresh one (the "
                             "first-call times are then cache hits)")
    parser.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"),
                        help="where to write the table (default benchmarks/RESULTS.md)")
    parser.add_argument("--check", action="store_true",
                        help="only the self-check: hand Numba adjoints against finite "
                             "differences, adsrc against adsrc.check_grads; exit 1 on failure")
    parser.add_argument("--probe-cache", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    quick = options.quick
    if options.sizes is None:
        options.sizes = QUICK_SIZES if quick else FULL_SIZES
    if options.limit is None:
        options.limit = 2.0 if quick else 60.0
    if options.budget is None:
        options.budget = 0.05 if quick else 1.0
    if options.single is None:
        options.single = 0.25 if quick else 5.0
    options.max_repeats = 15 if quick else 30
    unknown = set(options.kernels) - set(problems.SPEC_BY_NAME)
    if unknown:
        parser.error(f"unknown kernels: {', '.join(sorted(unknown))}")
    unknown = set(options.peers) - set(PEER_NAMES)
    if unknown:
        parser.error(f"unknown peers: {', '.join(sorted(unknown))}")
    return options


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    options = parse(argv)

    def log(text):
        print(text, flush=True)

    if options.probe_cache:
        probe_cache(options.probe_cache.split(","), options.sweeps, options.backend)
        return 0
    if options.check:
        peers, _ = load_peers(options.peers, log, options.peer_threads)
        tool = Adsrc(options.backend)
        ok, _ = self_check(peers, tool, out=log)
        log("self-check " + ("passed" if ok else "FAILED"))
        return 0 if ok else 1
    command = "python " + " ".join(shlex.quote(a) for a in
                                   [os.path.relpath(os.path.abspath(__file__))] + argv)
    allocator = steady_allocator()
    log(f"allocator: {allocator}")
    outcome = run(options, log)
    outcome["allocator"] = allocator
    write_results(options.output, options, outcome, command)
    other_tables.refresh(options.output)
    log(f"wrote {options.output} ({fmt_seconds(outcome['elapsed'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
