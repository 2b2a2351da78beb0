"""The package's errors: one class per kind of bad input, each message saying what is wrong and what to do.

A leaf module: it imports nothing of the package, so every layer can raise these and the command line
can tell an expected error (one line, no traceback) from a bug.
"""

from __future__ import annotations

import errno


class GhostMixNetError(Exception):
    """Base of the errors this package raises on purpose."""


class DataError(GhostMixNetError):
    """A data file or folder is missing, malformed or unsafe; the message says how to fix it."""


class CheckpointError(GhostMixNetError):
    """A checkpoint is missing, unreadable, unsafe or for another model; the message says which."""


class WeightsError(GhostMixNetError, ValueError):
    """A weights file is missing, altered or not ghostmixnet's; the message says which and what to do."""


class ExportError(GhostMixNetError):
    """An export or an exported file is unusable; the message says why."""


class RunError(GhostMixNetError):
    """A run cannot start or continue as asked; the message says why and what to do."""


class ServeError(GhostMixNetError):
    """A service cannot start as asked (a runtime missing or unfit, views not offered); the message says why."""


class NonFiniteLossError(RunError, FloatingPointError):
    """The loss became NaN or infinite; the weights were not updated with it."""


EXPECTED_ERRORS: tuple[type[BaseException], ...] = (GhostMixNetError, ValueError, FloatingPointError, OSError)
"""What a user's input or machine can cause: reported in one line, without a traceback."""


def one_line(error: BaseException) -> str:
    """What a user reads of ``error``: its message, without the ``[Errno N]`` prefix of the package's own
    OSErrors (the message names the file and says what to do), or the error's type when it has none. An
    operating-system error on a file that the package did not word itself (a folder without permission deep
    inside a data folder, say) names the file and what the system said, in the package's form."""
    if isinstance(error, OSError) and error.strerror and error.filename is None:
        return error.strerror
    if isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE):
        return (f"too many files are open (opening {error.filename}): close some programs or raise the limit "
                "(ulimit -n)")
    if isinstance(error, OSError) and error.strerror:
        target = f"{error.filename} -> {error.filename2}" if error.filename2 else f"{error.filename}"
        advice = "; check its permissions and those of the folders above it" if error.errno in (
            errno.EACCES, errno.EPERM) else ""
        return f"cannot access {target}: {error.strerror}{advice}"
    return str(error) or type(error).__name__
