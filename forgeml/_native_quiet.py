"""Keep C++ libraries' log lines (TensorFlow, TFLite, absl) off the user's terminal.

They write straight to file descriptor 2, before and regardless of ``TF_CPP_MIN_LOG_LEVEL`` in
TensorFlow 2.21, so Python's ``redirect_stderr`` cannot catch them. For the duration of the block fd 2
points at a temporary file, whose text is then logged at DEBUG. With ``--debug`` nothing is hidden.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile

log = logging.getLogger("forgeml")


@contextlib.contextmanager
def native_stderr_to_log():
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters, some notebooks)
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(ValueError, OSError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode(errors="replace").strip()
            if text:
                log.debug("native library output:\n%s", text)
