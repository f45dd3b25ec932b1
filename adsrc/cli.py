"""The command line: ``adsrc generate path/to/kernels.py:gauss_seidel --wrt data,b ...``.

Exit status: 0 on success, 1 for a user error (diagnostics as ``file:line:col: error: ...`` on
stderr), 2 for a usage error (argparse).
"""

import argparse
import importlib.util
import os
import sys

from adsrc.errors import AdsrcError
from adsrc.offline import generate


def _load(target):
    path, _, name = target.rpartition(":")
    if not path or not name:
        raise AdsrcError(f"expected FILE.py:FUNCTION, got {target!r}")
    if not os.path.isfile(path):
        raise AdsrcError(f"{path}: no such file")
    module_name = "adsrc_cli_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    if not hasattr(module, name):
        raise AdsrcError(f"{path}: no function named {name!r}")
    return getattr(module, name)


def _names(text):
    return tuple(item.strip() for item in text.split(",") if item.strip()) if text else None


def parser():
    top = argparse.ArgumentParser(prog="adsrc", description="Source-transformation AD for "
                                  "in-place numeric kernels.")
    commands = top.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write the adjoint of a kernel as source files")
    gen.add_argument("target", help="FILE.py:FUNCTION")
    gen.add_argument("--wrt", required=True, help="comma-separated names to differentiate by")
    gen.add_argument("--outputs", help="comma-separated outputs (array names and/or 'return')")
    gen.add_argument("--types", help="comma-separated argument types, e.g. "
                     "'int32[:];int32[:];float64[:];float64[:];float64[:];int' (use ';' between "
                     "types); default: the parameters' string annotations")
    gen.add_argument("--backend", choices=("cython", "python"), default="cython")
    gen.add_argument("-o", "--output-dir", default=".", help="directory for the files")
    return top


def main(argv=None):
    args = parser().parse_args(argv)
    command = "adsrc " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        fn = _load(args.target)
        types = args.types.split(";") if args.types else None
        filename, source = generate(fn, _names(args.wrt), _names(args.outputs), types,
                                    args.backend, command)
    except AdsrcError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, filename)
    with open(path, "w") as handle:
        handle.write(source)
    print(path)
    return 0
