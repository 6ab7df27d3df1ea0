"""Running the `innout` command in the test process: undo what it changes globally (environment variables, the
logging configuration Prefect installs when the command imports it), so later tests see the process as before."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator


@contextlib.contextmanager
def isolated_cli() -> Iterator[None]:
    env = dict(os.environ)
    loggers = [logging.getLogger()] + [lg for lg in logging.root.manager.loggerDict.values()
                                        if isinstance(lg, logging.Logger)]
    state = {lg: (lg.level, list(lg.handlers), lg.propagate, lg.disabled) for lg in loggers}
    disable = logging.root.manager.disable
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(env)
        for lg in [logging.getLogger()] + [x for x in logging.root.manager.loggerDict.values()
                                           if isinstance(x, logging.Logger)]:
            level, handlers, propagate, disabled = state.get(lg, (logging.NOTSET, [], True, False))
            lg.setLevel(level)
            lg.handlers[:] = handlers
            lg.propagate, lg.disabled = propagate, disabled
        logging.disable(disable)
