"""``python -m adsrc``: the command line (see :mod:`adsrc.cli`)."""

import sys

from adsrc.cli import main

sys.exit(main())
