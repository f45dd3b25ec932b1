"""Where compiled modules live, and how a module's cache key is made.

The cache directory is ``$ADSRC_CACHE_DIR`` if set, else the user cache directory
(platformdirs).  A module's key hashes everything its binary depends on: the generated source,
the compiler flags, the Cython and Python versions and the platform.  Files are written under a
temporary name and renamed into place (an atomic operation), so two processes building the same
module at once both end up with a complete file and neither reads a half-written one.

A cache hit finds the module without generating its source, through a second key that hashes the
kernel's source and what it depends on (:mod:`adsrc.compiling.source_key`, records in ``keys/``).
"""

import functools
import hashlib
import os
import platform
import sys
import sysconfig

import Cython
import platformdirs

ENVIRONMENT_VARIABLE = "ADSRC_CACHE_DIR"


def cache_dir():
    path = os.environ.get(ENVIRONMENT_VARIABLE) or platformdirs.user_cache_dir("adsrc")
    os.makedirs(path, exist_ok=True)
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
