"""Keep framework chatter (exporter warnings, progress prints) out of the user's terminal."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings


@contextlib.contextmanager
def quiet(*logger_names: str):
    """Silence the named loggers, Python warnings, stdout and stderr for the duration; restore after.

    What was printed is logged at DEBUG so ``--debug`` still shows it.
    """
    log = logging.getLogger("forgeml")
    levels = {n: logging.getLogger(n).level for n in logger_names}
    for n in logger_names:
        logging.getLogger(n).setLevel(logging.ERROR)
    buf = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)
        if buf.getvalue().strip():
            log.debug("framework output:\n%s", buf.getvalue())


@contextlib.contextmanager
def native_quiet():
    """Route file descriptor 2 to a temp file while TensorFlow runs, and log what it wrote at DEBUG.

    TF 2.21's C++ logging (absl: oneDNN notes, "could not find cuda drivers", grappler sessions)
    ignores TF_CPP_MIN_LOG_LEVEL and writes straight to fd 2, past Python's ``sys.stderr``.
    With ``--debug`` nothing is hidden. Also the one place TF_CPP_MIN_LOG_LEVEL is set (honoured by
    older TF builds): forgeml first imports TensorFlow inside this context (converter, Keras zoo, tflite).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    log = logging.getLogger("forgeml")
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode(errors="replace").strip()
            if text:
                log.debug("tensorflow native output:\n%s", text)
