"""Peers the adsrc benchmark compares against (each optional: a missing one is reported).

Every peer module exposes ``NAME``, ``load()`` (imports the framework, returns its version
string, raises ImportError when it is missing) and ``build(spec, problem)``, which returns a
dict of :class:`Case` objects (``"grad"``, and ``"primal"`` where the peer has one), or None when
the peer has no implementation of that kernel.
"""

import dataclasses
from typing import Any, Callable, Optional


@dataclasses.dataclass
class Case:
    """One timed computation: ``state = setup()`` (untimed: fresh copies of mutated inputs),
    ``run(state)`` (timed), ``result(state, out)`` -> gradients keyed like ``spec.compared``."""
    setup: Callable[[], Any]
    run: Callable[[Any], Any]
    result: Optional[Callable[[Any, Any], dict]] = None
    compile: Optional[Callable[[], None]] = None   # ahead-of-time compilation, timed apart
    note: str = ""
