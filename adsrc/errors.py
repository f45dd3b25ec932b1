"""Exceptions raised by adsrc.

Every error a user can trigger is an :class:`AdsrcError`.  Errors that point at the user's kernel
source carry a GNU-style location (``file:line:col: error: message``) followed by the offending
source line and a caret, so that editors and terminals can jump to it.
"""


class AdsrcError(Exception):
    """Base class of every error raised by adsrc."""


class UnsupportedError(AdsrcError):
    """A construct of the kernel that adsrc cannot differentiate correctly.

    Raised before any analysis runs and before any user array is touched: adsrc refuses rather than
    produce a silent zero or a wrong derivative.
    """

    def __init__(self, message, filename="<unknown>", line=0, col=0, source_line=None):
        self.message = message
        self.filename = filename
        self.line = line
        self.col = col
        self.source_line = source_line
        super().__init__(self._format())

    def _format(self):
        text = f"{self.filename}:{self.line}:{self.col + 1}: error: {self.message}"
        if self.source_line is not None:
            stripped = self.source_line.rstrip("\n")
            text += f"\n    {stripped}\n    {' ' * self.col}^"
        return text


class ArgumentError(AdsrcError, ValueError):
    """Arguments of a call that do not fit the kernel (dtype, shape, aliasing, unknown adjoint name).

    Raised before anything runs, so the user's arrays are left unchanged.
    """


class SignatureError(UnsupportedError, ArgumentError):
    """The kernel cannot run with the types of the given arguments (a float array where an
    index array is expected, an array rebound as a scalar...).

    It is an :class:`UnsupportedError`, located in the kernel where the types clash, and an
    :class:`ArgumentError`, since another call with other argument types may be fine.
    """
