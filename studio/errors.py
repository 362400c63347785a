"""The one boundary where exceptions become what the user sees.

StudioError messages are written for people and shown as they are. Anything else is a bug:
its traceback goes to the log, and the browser gets a short message without it.
"""

import functools
import inspect
import logging

import gradio as gr

from training.core.errors import StudioError

log = logging.getLogger("studio")
TITLE = "Cannot do that"


def user_errors(handler):
    """Decorate a Gradio handler. On an error the user sees a message and every output keeps
    its value (a single ``gr.skip()`` skips them all), so nothing on the page is lost:
    StudioError and gr.Error show their message; other errors are logged with a traceback."""

    if inspect.isgeneratorfunction(handler):  # a streaming handler: the same edge, per yield

        @functools.wraps(handler)
        def streaming(*args, **kwargs):
            try:
                yield from handler(*args, **kwargs)
            except Exception as error:
                yield _shown(handler, error)

        return streaming

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except Exception as error:
            return _shown(handler, error)

    return wrapper


def _shown(handler, error: Exception):
    """Tell the user (a toast) and keep every output as it is."""
    if isinstance(error, (gr.Error, StudioError)):
        gr.Warning(error.message if isinstance(error, gr.Error) else str(error), title=TITLE)
    else:  # the boundary: log the traceback, show a safe message
        log.error("handler %s failed", handler.__name__, exc_info=error)
        gr.Warning(
            f"Something went wrong ({type(error).__name__}). Nothing you made was lost; "
            "the details are in the studio's log.",
            title=TITLE,
        )
    return gr.skip()
