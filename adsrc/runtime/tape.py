"""The tape shared by a forward sweep and its reverse sweep.

Four stacks: floats (old values of overwritten float scalars and elements), ints (old integer
values, loop bounds, trip counts, branch directions), frames (the locals a reverse sweep
reads, saved once per call) and objects (what the derivative rules of library calls save, see
:mod:`adsrc.runtime.rule_calls`; not counted in the statistics).  The tape counts what was pushed, so every adjoint can report what
it recorded (:class:`TapeStats`).
"""

from dataclasses import dataclass

import numpy as np

BYTES_PER_VALUE = 8


@dataclass(frozen=True)
class TapeStats:
    """What one adjoint call recorded.

    ``floats_pushed``/``ints_pushed`` count scalar values saved (frame scalars and the elements
    of array copies included); ``arrays_copied`` counts the array snapshots among them (see
    :mod:`adsrc.analyses.snapshots`); ``peak_bytes`` is the most the tape held at once, 8 bytes
    a value.
    """

    floats_pushed: int
    ints_pushed: int
    peak_bytes: int
    arrays_copied: int = 0

    @classmethod
    def of(cls, tape):
        """The statistics of a tape (either backend's) after a forward sweep."""
        return cls(tape.floats_pushed, tape.ints_pushed, tape.peak_values * BYTES_PER_VALUE,
                   tape.arrays_copied)


def _frame_counts(values):
    """(floats, ints) among the values of a frame; arrays are held by reference, not counted.

    A frame's scalars may be NumPy scalars (``j = idx[0]`` is an ``np.int32``): they count as
    the C tape counts them."""
    floats = ints = 0
    for value in values:
        if isinstance(value, (float, np.floating)):
            floats += 1
        elif isinstance(value, (int, np.integer)):
            ints += 1
    return floats, ints


class Tape:
    def __init__(self):
        self.floats = []
        self.ints = []
        self.frames = []
        self.floats_pushed = 0
        self.ints_pushed = 0
        self.peak_values = 0
        self._frame_sizes = []          # scalars held by each frame, parallel to ``frames``
        self._frame_values = 0          # their sum
        self.blocks = []                # array snapshots (see adsrc.analyses.snapshots)
        self._block_values = 0          # their total size
        self.arrays_copied = 0
        self.objects = []

    def push_float(self, value):
        self.floats.append(value)
        self.floats_pushed += 1

    def pop_float(self):
        return self.floats.pop()

    def push_int(self, value):
        self.ints.append(int(value))
        self.ints_pushed += 1

    def pop_int(self):
        return self.ints.pop()

    def push_block(self, array):
        """Save a copy of a whole array, which a loop is about to overwrite element by element;
        returns the copy's position, for :meth:`saved`."""
        self.blocks.append(np.array(array, copy=True))
        self.arrays_copied += 1
        self.floats_pushed += array.size
        self._block_values += array.size
        return len(self.blocks) - 1

    def saved(self, position, index):
        """Element ``index`` of the copy at ``position``."""
        return self.blocks[position][index]

    def block(self, position):
        """The copy at ``position`` itself: a reverse sweep that reads no element of the array
        while it would restore it makes the array's name refer to its copy instead."""
        return self.blocks[position]

    def drop_block(self, array):
        """Discard the copy pushed last (the reverse sweep is done with it)."""
        block = self.blocks.pop()
        self._block_values -= block.size

    def push_object(self, value):
        self.objects.append(value)

    def pop_object(self):
        return self.objects.pop()

    def push_frame(self, values):
        floats, ints = _frame_counts(values)
        self.frames.append(values)
        self._frame_sizes.append(floats + ints)
        self._frame_values += floats + ints
        self.floats_pushed += floats
        self.ints_pushed += ints
        self.note_peak()

    def pop_frame(self):
        self._frame_values -= self._frame_sizes.pop()
        return self.frames.pop()

    def held(self):
        """How many scalar values the tape holds now."""
        return len(self.floats) + len(self.ints) + self._frame_values + self._block_values

    def note_peak(self):
        """Record the current size as a candidate peak."""
        self.peak_values = max(self.peak_values, self.held())

    def note_forward_end(self):
        """Record the size at the end of a forward sweep.

        A forward sweep only pushes and a reverse sweep only pops, so the size there is the
        peak.  Call it after ``<kernel>__fwd`` (``adsrc`` does; so does the compiled tape)
        whether or not the forward sweep pushed a frame."""
        self.note_peak()

    def empty(self):
        """Whether everything pushed has been popped (true after a complete reverse sweep)."""
        return not (self.floats or self.ints or self.frames or self.blocks or self.objects)
