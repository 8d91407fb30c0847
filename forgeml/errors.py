"""The error tree. Every message names the stage, what went wrong and what to do next.

The CLI turns a ``ForgeError`` into one line and an exit code (``exit_code``); anything else is a bug
and gets a traceback.
"""

from __future__ import annotations

class ForgeError(Exception):
    """Base of every error forgeml raises on purpose."""

    exit_code = 2


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run, raised once its staging is cleaned up; the message says what was written."""


class InputError(ForgeError):
    """The user's input is wrong: a missing file, a corrupt model, a bad option, a missing extra."""


class ConversionError(ForgeError):
    """The source model could not be imported into ONNX IR."""


class PassError(ForgeError):
    """A pass failed; the message names the pass and the passes that ran before it."""


class TargetError(ForgeError):
    """A target could not emit or load its artifact (or what it needs is absent)."""


class PublishError(ForgeError):
    """The package was written but could not be logged to MLflow; the message names the tracking URI,
    where the artifacts are, and how to log them again."""


class ParityError(ForgeError):
    """A stage's numbers do not match the source model within tolerance."""

    exit_code = 1

    def __init__(self, message: str, report: object | None = None):
        super().__init__(message)
        self.report = report


def first_line(e: BaseException, *, with_type: bool = False, root: bool = False) -> str:
    """One line for a message: the first line of ``e`` (of its root cause with ``root``), without
    terminal colour codes, at most 300 characters; the type's name when the message is empty."""
    import re

    while root and e.__cause__ is not None:
        e = e.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    if not text:
        return type(e).__name__
    line = text.splitlines()[0][:300]
    return f"{type(e).__name__}: {line}" if with_type else line


def missing_extra(module: str, extra: str) -> InputError:
    """The error for an optional framework that is not installed."""
    return InputError(
        f"this needs the Python package '{module}', which is not installed; "
        f"install it with: pip install 'forgeml[{extra}]'"
    )


def require(module: str, extra: str):
    """Import an optional dependency lazily, or raise an InputError naming the pip line."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise missing_extra(module, extra) from e


def require_file(path, *, empty_ok: bool = False, what: str = ""):
    """``path`` as a ``Path`` when it names a readable regular file; else the one line every reader
    gives (a FIFO would block ``open`` forever, a device never ends, a directory is no file)."""
    import os
    import stat
    from pathlib import Path

    p = Path(path)
    label = f"{what} {p}".strip()
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except OSError as e:
        raise InputError(f"{label}: cannot read it ({e.strerror})") from e
    mode = st.st_mode
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else \
            "a special file"
        raise InputError(f"{label}: {kind}, not a file")
    if st.st_size == 0 and not empty_ok:
        raise InputError(f"{label}: an empty file (0 bytes: an interrupted download or copy?)")
    if not os.access(p, os.R_OK):
        raise InputError(f"{label}: cannot read it (permission denied)")
    return p
