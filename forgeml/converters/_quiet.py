"""Keep framework chatter (exporter warnings, progress prints) out of the user's terminal."""

from __future__ import annotations

import contextlib
import io
import logging
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
