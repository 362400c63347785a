"""The one boundary where exceptions become what the user sees.

StudioError messages are written for people and shown as they are. Anything else is a bug:
its traceback goes to the log, and the browser gets a short message without it.
"""

import functools
import logging

import gradio as gr

from training.errors import StudioError

log = logging.getLogger("studio")


def user_errors(handler):
    """Decorate a Gradio handler: StudioError -> gr.Error(message); other errors -> logged."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except StudioError as error:
            raise gr.Error(str(error), print_exception=False) from None
        except Exception as error:  # the boundary: log the traceback, show a safe message
            log.exception("handler %s failed", handler.__name__)
            raise gr.Error(
                f"Something went wrong ({type(error).__name__}). Nothing you made was lost; "
                "the details are in the studio's log.",
                print_exception=False,
            ) from None

    return wrapper
