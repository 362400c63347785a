"""The one boundary where exceptions become what the user sees.

StudioError messages are written for people and shown as they are. Anything else is a bug:
its traceback goes to the log, and the browser gets a short message without it.
"""

import functools
import logging

import gradio as gr

from training.errors import StudioError

log = logging.getLogger("studio")
TITLE = "Cannot do that"


def user_errors(handler):
    """Decorate a Gradio handler. On an error the user sees a message and every output keeps
    its value (a single ``gr.skip()`` skips them all), so nothing on the page is lost:
    StudioError and gr.Error show their message; other errors are logged with a traceback."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except (gr.Error, StudioError) as error:
            gr.Warning(error.message if isinstance(error, gr.Error) else str(error), title=TITLE)
            return gr.skip()
        except Exception as error:  # the boundary: log the traceback, show a safe message
            log.exception("handler %s failed", handler.__name__)
            gr.Warning(
                f"Something went wrong ({type(error).__name__}). Nothing you made was lost; "
                "the details are in the studio's log.",
                title=TITLE,
            )
            return gr.skip()

    return wrapper
