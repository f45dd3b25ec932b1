"""Where compiled modules live, and how a module's cache key is made.

The cache directory is ``$ADSRC_CACHE_DIR`` if set, else the user cache directory
(platformdirs).  A module's key hashes everything its binary depends on: the generated source,
the compiler flags, the Cython and Python versions and the platform.  Files are written under a
temporary name and renamed into place (an atomic operation), so a process never reads a
half-written module.  A build holds a lock on its module's name (:func:`build_lock`), so that of
several processes wanting the same missing module (the ranks of an MPI job, the workers of a test
run) one builds it and the others wait and import it.

A cache hit finds the module without generating its source, through a second key that hashes the
kernel's source and what it depends on (:mod:`adsrc.compiling.source_key`, records in ``keys/``).
"""

import contextlib
import functools
import hashlib
import os
import platform
import struct
import sys
import sysconfig

import Cython
import platformdirs

from adsrc.errors import AdsrcError

try:
    import fcntl
except ImportError:         # Windows
    fcntl = None

ENVIRONMENT_VARIABLE = "ADSRC_CACHE_DIR"
LOCKS = "locks"             # the cache's subdirectory of lock files, one per module name


def cache_dir():
    """The cache directory, made if missing; AdsrcError naming where it came from if it
    cannot be (a file of that name, no permission)."""
    given = os.environ.get(ENVIRONMENT_VARIABLE)
    path = given or platformdirs.user_cache_dir("adsrc")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        where = f"${ENVIRONMENT_VARIABLE}" if given else "the user cache directory"
        raise AdsrcError(f"adsrc cannot use {path} ({where}) as its cache of compiled "
                         f"modules: {exc.strerror or exc}; set ${ENVIRONMENT_VARIABLE} to a "
                         f"directory it can write") from None
    return path


def toolchain_tag(flags):
    """What a binary depends on besides its source."""
    return _environment() + "|" + " ".join(flags)


@functools.lru_cache(maxsize=None)
def _environment():
    """Cython and Python versions and the platform a binary is built for (system, machine, C
    library), once per process.  Not ``platform.platform()``: it names the running kernel's
    release (a kernel update is no reason to rebuild) and runs ``uname -p`` in a child process,
    which every new process paid for on its first cache hit."""
    return "|".join([Cython.__version__, sys.version, platform.system(), platform.machine(),
                     " ".join(platform.libc_ver()),
                     sysconfig.get_config_var("EXT_SUFFIX") or ""])


def key(source, flags):
    digest = hashlib.sha256()
    digest.update(source.encode())
    digest.update(toolchain_tag(flags).encode())
    return digest.hexdigest()[:20]


def extension_suffix():
    return sysconfig.get_config_var("EXT_SUFFIX") or ".so"


def publish(temporary, final):
    """Move a finished file into place atomically (the last writer wins, both are complete)."""
    os.replace(temporary, final)


def truncated(path):
    """Whether the shared library at ``path`` is an ELF file cut short (a copy or a disk that
    failed midway).  Loading one kills the process (SIGBUS: the loader maps pages past the end
    of the file) where other damage raises ImportError.  The section header table comes last
    in the files the linker writes, so a file cut anywhere ends before that table's end.
    Other formats (Mach-O, PE) are left to the import."""
    with open(path, "rb") as handle:
        header = handle.read(64)
    if header[:4] != b"\x7fELF":
        return False
    if len(header) < 64 or header[4] not in (1, 2) or header[5] not in (1, 2):
        return True
    order = "<" if header[5] == 1 else ">"
    if header[4] == 2:          # 64-bit
        (table,), (size, count) = (struct.unpack_from(order + "Q", header, 0x28),
                                   struct.unpack_from(order + "HH", header, 0x3A))
    else:
        (table,), (size, count) = (struct.unpack_from(order + "I", header, 0x20),
                                   struct.unpack_from(order + "HH", header, 0x2E))
    return table + size * count > os.path.getsize(path)


@contextlib.contextmanager
def build_lock(directory, name):
    """Hold the lock on building the module ``name`` in the cache ``directory``.

    Why: processes started together (eight MPI ranks running one script) all miss the cache for
    the same kernel, and each used to build it, eight compilations for one module.  Under the
    lock, the first builds; the others wait, then look again and import its file.  The lock is
    ``flock`` on a file of ``locks/``, which the operating system releases when its holder
    exits, so a build that crashes leaves no stale lock; the lock files stay, empty.  Where
    there is no ``flock`` (Windows, or a file system that refuses it) processes build side by
    side as without the lock: the atomic rename of :func:`publish` keeps that correct, only
    wasteful."""
    if fcntl is None:
        yield
        return
    folder = os.path.join(directory, LOCKS)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name + ".lock"), "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except OSError:
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
