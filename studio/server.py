"""The studio's web server: the /v1beta API and the Gradio UI on one FastAPI app.

What reaches the machine through it, and how that is held in check:

- Gradio's file cache is a folder of the studio's own inside the data folder
  (``<data>/cache/gradio``), not the shared ``/tmp/gradio`` that every Gradio app on the machine
  serves. ``use_own_cache`` must run before gradio is imported (it reads the folder at import).
- Every file a UI handler receives must be one the browser uploaded into that cache. Gradio checks
  this itself once it counts as launched; mounted into FastAPI (``gr.mount_gradio_app``) it never
  does, so a crafted call could name any readable file. ``build_app`` marks the UI launched so
  Gradio's check runs on every call.
- Request bodies are bounded and repeated wrong logins slowed down (``studio.guards``).
"""

from __future__ import annotations

import os
from pathlib import Path

from training.core.layout import exports_dir, gradio_cache_dir


def use_own_cache(data_dir: Path) -> Path:
    """Point Gradio's cache at the data folder; call before gradio is imported."""
    folder = gradio_cache_dir(data_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def build_app(ctx, *, host: str, port: int, auth: list[tuple[str, str]] | None,
              api_key: str | None, hub_models: tuple[str, ...] = ()):
    """The whole server for ``ctx``: API routes first, the UI mounted at ``/``."""
    import gradio as gr
    from fastapi import FastAPI

    from studio.api import openai_compat
    from studio.api import routes as api
    from studio.app_ui import CSS, build_ui
    from studio.guards import BodyLimitMiddleware, LoginThrottleMiddleware
    from studio.i18n import I18N
    from studio.locale import LocaleMiddleware

    if Path(os.environ.get("GRADIO_TEMP_DIR", "")) != gradio_cache_dir(ctx.data_dir).resolve():
        raise RuntimeError("use_own_cache(data_dir) must run before gradio is imported.")
    demo = build_ui(ctx).queue(default_concurrency_limit=4)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(LocaleMiddleware)
    app.add_middleware(LoginThrottleMiddleware)
    app.add_middleware(BodyLimitMiddleware)  # added last: the outermost, before anything reads
    settings = api.ApiSettings(api_key=api_key, hub_models=hub_models)
    api.install(app, ctx, settings)  # /v1beta, before the UI's "/"
    openai_compat.install(app, ctx, settings)  # /v1
    app = gr.mount_gradio_app(
        app, demo, path="/",
        server_name=host,
        server_port=port,
        auth=auth or None,
        max_file_size=ctx.limits.max_file_bytes,
        i18n=I18N,
        css=CSS,
        show_error=True,
        footer_links=["settings"],
        run_history=False,
        allowed_paths=[str(exports_dir(ctx.data_dir))],
        ssr_mode=False,
    )
    # launch() sets this; mount_gradio_app does not, and until it is set Gradio skips its check
    # that a file handed to a handler was uploaded into its cache (processing_utils._check_allowed).
    demo.has_launched = True
    return app
