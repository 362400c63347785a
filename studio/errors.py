"""The one boundary where exceptions become what the user sees.

StudioError messages are written for people and shown as they are. Anything else is a bug:
its traceback goes to the log, and the browser gets a short message without it.
"""

import functools
import inspect
import logging
import typing

import gradio as gr

from studio.locale import language_of
from training.core.errors import StudioError
from training.core.messages import LANGUAGE, say

log = logging.getLogger("studio")


def user_errors(handler):
    """Decorate a Gradio handler. On an error the user sees a message and every output keeps
    its value (a single ``gr.skip()`` skips them all), so nothing on the page is lost:
    StudioError and gr.Error show their message; other errors are logged with a traceback.

    The handler runs in its page's language (``studio.messages.say``): the wrapper takes the
    request as an extra first argument, which Gradio fills in."""

    if inspect.isgeneratorfunction(handler):  # a streaming handler: the same edge, per yield

        @functools.wraps(handler)
        def streaming(page_request: gr.Request, *args, **kwargs):
            language = language_of(page_request)
            answers = handler(*args, **kwargs)
            while True:  # each step may run on another thread: set the language for each
                token = LANGUAGE.set(language)
                try:
                    value = next(answers)
                except StopIteration:
                    return
                except Exception as error:
                    yield _shown(handler, error)
                    return
                finally:
                    LANGUAGE.reset(token)
                yield value

        return _taking_request(streaming, handler)

    @functools.wraps(handler)
    def wrapper(page_request: gr.Request, *args, **kwargs):
        token = LANGUAGE.set(language_of(page_request))
        try:
            return handler(*args, **kwargs)
        except Exception as error:
            return _shown(handler, error)
        finally:
            LANGUAGE.reset(token)

    return _taking_request(wrapper, handler)


def _taking_request(wrapper, handler):
    """Give ``wrapper`` the handler's signature with a ``gr.Request`` parameter first, so Gradio
    passes the request, then the handler's inputs."""
    signature = inspect.signature(handler)
    request = inspect.Parameter("page_request", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                annotation=gr.Request)
    wrapper.__signature__ = signature.replace(parameters=[request, *signature.parameters.values()])
    try:
        hints = typing.get_type_hints(handler)
    except (NameError, TypeError):  # as Gradio does: no special arguments then
        hints = {}
    wrapper.__annotations__ = {**hints, "page_request": gr.Request}
    return wrapper


def _shown(handler, error: Exception):
    """Tell the user (a toast) and keep every output as it is."""
    if isinstance(error, (gr.Error, StudioError)):
        gr.Warning(error.message if isinstance(error, gr.Error) else error.said(),
                   title=say("new.cannot"))
    else:  # the boundary: log the traceback, show a safe message
        log.error("handler %s failed", handler.__name__, exc_info=error)
        gr.Warning(
            say("ui.went_wrong", error=type(error).__name__),
            title=say("new.cannot"),
        )
    return gr.skip()
