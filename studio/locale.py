"""The studio's language: the browser's, unless the user picked one in the studio.

Gradio's frontend reads ``navigator.language`` once, when it starts, and does not re-translate
everything on a later change (tab labels keep the old language). So the choice (kept in
localStorage, or given as ``?lang=fr`` in the address) is applied before Gradio starts: a tiny
script is put at the top of the index page by an ASGI middleware, and the in-app picker stores
the choice and reloads the page.
"""

from __future__ import annotations

LANGUAGES = [("English", "en"), ("简体中文", "zh-CN"), ("Français", "fr")]

COOKIE = "studio-lang"
"""The page's language, for the server (set by the boot script)."""

_BOOT_SCRIPT = b"""<script>(function () {
  try {
    var lang = new URLSearchParams(location.search).get('lang');
    if (lang) localStorage.setItem('studio-lang', lang);
    lang = localStorage.getItem('studio-lang');
    if (!lang && (navigator.language || '').toLowerCase().indexOf('zh') === 0) lang = 'zh-CN';
    if (lang) Object.defineProperty(Navigator.prototype, 'language',
                                    {get: function () { return lang; }, configurable: true});
    document.cookie = 'studio-lang=' + encodeURIComponent(lang || navigator.language || 'en') +
                      '; path=/; SameSite=Lax';
  } catch (e) {}
})();</script>"""

LANGUAGE_IN_USE_JS = """() => {
    const lang = (localStorage.getItem('studio-lang') || navigator.language || 'en').toLowerCase();
    return lang.startsWith('zh') ? 'zh-CN' : lang.startsWith('fr') ? 'fr' : 'en';
}"""
"""Shows the language in use in the picker when the page loads."""

PICK_LANGUAGE_JS = """(lang) => {
    if (!lang) return;
    localStorage.setItem('studio-lang', lang);
    const url = new URL(location.href);
    url.searchParams.delete('lang');
    location.replace(url.toString());
}"""


class LocaleMiddleware:
    """Insert the language boot script right after ``<head>`` of the studio's index page."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "GET" or scope.get("path") != "/":
            await self.app(scope, receive, send)
            return
        start: dict = {}
        body: list[bytes] = []

        async def capture(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            payload = b"".join(body)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            content_type = dict(start.get("headers", [])).get(b"content-type", b"")
            if content_type.startswith(b"text/html") and b"<head>" in payload:
                payload = payload.replace(b"<head>", b"<head>" + _BOOT_SCRIPT, 1)
            headers.append((b"content-length", str(len(payload)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": payload})

        await self.app(scope, receive, capture)


def language_of(request) -> str:
    """``en``, ``zh-CN`` or ``fr`` for a Gradio or Starlette request: its ``studio-lang``
    cookie, else its Accept-Language header, else English."""
    if request is None:
        return "en"
    cookies = getattr(request, "cookies", None) or {}
    headers = getattr(request, "headers", None) or {}
    for wanted in (cookies.get(COOKIE, ""), headers.get("accept-language", "")):
        code = wanted.strip().lower()
        if code.startswith("zh"):
            return "zh-CN"
        if code.startswith("fr"):
            return "fr"
        if code.startswith("en"):
            return "en"
    return "en"
