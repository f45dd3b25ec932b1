"""How long adsrc takes to generate an adjoint's source, for loop bodies of many jumps and locals.

    python benchmarks/generation.py [--blocks 8,16,32,64] [--against 5f2131c] [--output GENERATION.md]

Why: a user pays generation on every kernel's first call, before the C compiler.  Long loop
bodies of nested ``if ...: continue`` blocks, each binding its own local, stress what grows with
the kernel: structuring the jumps (:mod:`adsrc.normalize.control`) and the analyses that visit
every statement once per local (:mod:`adsrc.analyses.recompute`).  A kernel of ``k`` blocks is
written to a file (adsrc reads a kernel's source) and its adjoint's source generated on the
Python backend (the Cython backend's ``source`` also builds the module, which would swamp what
is measured; both backends share the normalisation and the analyses), the median of
``--repeats`` runs, each in a new process (adsrc keeps what it generated in a process).

``--against REV`` measures the same in a git worktree of revision REV, in a new process, so that
a change's effect is read side by side from one run.
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
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import run  # noqa: E402


def kernel_source(blocks):
    """A loop body of ``blocks`` blocks 'if a: if b: (work; continue)', each then binding a
    local of its own that the running sum reads."""
    lines = ["def many_jumps(x, w):", "    s = 0.0", "    for i in range(len(x)):"]
    for j in range(blocks):
        lines += [f"        if x[i] > {0.05 * (j % 7):.2f}:",
                  f"            if w[{j % 3}] * x[i] < 0.5:",
                  f"                s = s + w[{(j + 1) % 3}] * x[i]",
                  "                continue",
                  f"        t{j} = s * w[{j % 3}] + x[i]",
                  f"        s = 0.9 * s + t{j} * x[i]"]
    return "\n".join(lines + ["    return s", ""])


def measure_one(blocks):
    """``(seconds, adjoint lines)`` of generating the adjoint of a kernel of ``blocks``
    blocks, in this process (a new one per measurement: adsrc keeps what it generated)."""
    import numpy as np

    import adsrc
    directory = tempfile.mkdtemp(prefix="adsrc-generation-")
    sys.path.insert(0, directory)
    with open(os.path.join(directory, "many_jumps.py"), "w") as handle:
        handle.write(kernel_source(blocks))
    from many_jumps import many_jumps
    f = adsrc.differentiate(many_jumps, wrt=("x", "w"), backend="python")
    args = (np.linspace(-1.0, 1.0, 8), np.array([0.9, 0.5, 0.3]))
    started = time.perf_counter()
    text = f.source("adjoint", backend="python", args=args)
    return time.perf_counter() - started, len(text.splitlines())


def measure(tree, blocks_list, repeats):
    """{blocks: (median seconds, adjoint lines)} with the adsrc of ``tree``, each run in a new
    process."""
    out = {}
    for blocks in blocks_list:
        runs = [_in_new_process(tree, blocks) for _ in range(repeats)]
        out[blocks] = (statistics.median(seconds for seconds, _ in runs), runs[0][1])
    return out


def _in_new_process(tree, blocks):
    code = (f"import json, sys; import adsrc; "
            f"assert adsrc.__file__.startswith({tree!r}), adsrc.__file__; "
            f"sys.path.insert(0, {HERE!r}); import generation; "
            f"print('MEASURED ' + json.dumps(generation.measure_one({blocks})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=tree, env=dict(os.environ, PYTHONPATH=tree))
    line = next(line for line in done.stdout.splitlines() if line.startswith("MEASURED "))
    return tuple(json.loads(line[len("MEASURED "):]))


def measure_at(revision, blocks_list, repeats):
    """:func:`measure` on a git worktree of ``revision``."""
    worktree = tempfile.mkdtemp(prefix="adsrc-generation-tree-")
    subprocess.run(["git", "worktree", "add", "--detach", worktree, revision], cwd=ROOT,
                   check=True, capture_output=True)
    try:
        return measure(worktree, blocks_list, repeats)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", worktree], cwd=ROOT,
                       capture_output=True)


def write_results(path, command, blocks_list, here, against, revision):
    header = "| blocks | kernel lines | adjoint lines | seconds |"
    rule = "|---|---|---|---|"
    if against is not None:
        header += f" seconds at {revision} | ratio |"
        rule += "---|---|"
    lines = ["# Generation time of an adjoint's source", "",
             f"Command: `{command}`  ",
             f"Date: {datetime.datetime.now():%Y-%m-%d %H:%M}  ",
             f"Machine: {run.nproc()} CPUs (nproc), {run.cpu_model()}; adsrc at git "
             f"{run.git_revision()}", "",
             "Seconds of `f.source('adjoint', backend='python', args=...)`, the "
             "median of the repeats, for a loop body of *blocks* nested 'if ...: continue' "
             "blocks, each binding a local of its own, each run in a new process "
             "(`benchmarks/generation.py`).", "",
             header, rule]
    for blocks in blocks_list:
        kernel_lines = len(kernel_source(blocks).splitlines())
        seconds, adjoint_lines = here[blocks]
        row = f"| {blocks} | {kernel_lines} | {adjoint_lines} | {seconds:.2f} |"
        if against is not None:
            before = against[blocks][0]
            row += f" {before:.2f} | {before / seconds:.1f}x |"
        lines.append(row)
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=lambda text: [int(k) for k in text.split(",")],
                        default=[8, 16, 32, 64], help="blocks per loop body (default 8,16,32,64)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--against", help="a git revision measured side by side")
    parser.add_argument("--output", default=os.path.join(HERE, "GENERATION.md"))
    options = parser.parse_args(argv)
    command = "python benchmarks/generation.py " + " ".join(sys.argv[1:] if argv is None
                                                            else argv)
    here = measure(ROOT, options.blocks, options.repeats)
    against = None if options.against is None else \
        measure_at(options.against, options.blocks, options.repeats)
    write_results(options.output, command.strip(), options.blocks, here, against,
                  options.against)
    print(f"wrote {options.output}")


if __name__ == "__main__":
    main()
