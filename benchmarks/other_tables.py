"""Copy the tables of the other benchmark scripts into RESULTS.md.

``checkpointing.py``, ``hvp.py``, ``rules.py``, ``layout.py``, ``overhead.py``, ``dense.py`` and
``flags.py`` each write their own file (``flags.py`` one per flag set), with the columns explained
there.  The issues ask for one results table, so RESULTS.md ends with a section holding each file's title,
command, date and tables, and a link for the rest.
``run.py`` writes that section whenever it writes RESULTS.md; after running one of the other
scripts, ``python benchmarks/other_tables.py`` refreshes it without re-running ``run.py``.
"""

import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MARKER = "<!-- tables of the other benchmark scripts, copied by benchmarks/other_tables.py -->"
SOURCES = ("CHECKPOINTING.md", "HVP.md", "RULES.md", "LAYOUT.md", "OVERHEAD.md", "DENSE.md",
           "GENERATION.md")
FLAGS_PATTERN = "FLAGS_*.md"        # flags.py: one file per flag set weighed
PROVENANCE = ("Command:", "Date:", "Written by", "Quiet machine")


def copied_tables(name, text):
    """Markdown for one file: its title as a heading, its provenance lines, then its tables."""
    lines = text.splitlines()
    title = next((line.lstrip("# ") for line in lines if line.startswith("# ")), name)
    out = [f"### {title}", "", f"From [`{name}`]({name}), where the columns are explained."]
    out += [""] + [line for line in lines if line.startswith(PROVENANCE)]
    in_table = False
    for line in lines:
        is_row = line.startswith("|")
        if is_row and not in_table:
            out.append("")
        if is_row:
            out.append(line)
        in_table = is_row
    return out + [""]


def section(directory=HERE):
    """The whole section, from the marker on; files not written yet are named as missing."""
    out = [MARKER, "", "## Other benchmark scripts", ""]
    flag_files = sorted(os.path.basename(path)
                        for path in glob.glob(os.path.join(directory, FLAGS_PATTERN)))
    for name in SOURCES + tuple(flag_files):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            with open(path) as handle:
                out += copied_tables(name, handle.read())
        else:
            out += [f"### {name}", "", "Not written yet.", ""]
    return "\n".join(out)


def refresh(results_path):
    """Replace the section at the end of ``results_path`` (or add it) with the current tables."""
    with open(results_path) as handle:
        text = handle.read()
    head = text.split(MARKER)[0].rstrip("\n")
    with open(results_path, "w") as handle:
        handle.write(head + "\n\n" + section(os.path.dirname(os.path.abspath(results_path))))


if __name__ == "__main__":
    refresh(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "RESULTS.md"))
