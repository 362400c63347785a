"""The harness itself: Playwright + Debian's Chromium + Gradio 6 work on this machine.

A throwaway Gradio app runs in this process (not the studio), so a failure here points at the
browser set-up rather than at the studio.
"""

from __future__ import annotations

import gradio as gr
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import free_tcp_port, screenshot_name


@pytest.fixture(scope="module")
def echo_app_url():
    with gr.Blocks(analytics_enabled=False) as demo:
        name = gr.Textbox(label="Name", elem_id="name")
        greet = gr.Button("Greet", elem_id="greet")
        greeting = gr.Textbox(label="Greeting", elem_id="greeting")
        greet.click(lambda text: f"Hello, {text}!", name, greeting)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_tcp_port(),
                            prevent_thread_lock=True, quiet=True, footer_links=[])
    yield url
    demo.close()


def test_clicking_a_gradio_button_runs_its_handler(page, echo_app_url):
    page.goto(echo_app_url)
    page.locator("#name textarea").fill("Ada")
    page.locator("#greet").click()

    expect(page.locator("#greeting textarea")).to_have_value("Hello, Ada!")


@pytest.mark.locale("fr-FR")
def test_the_locale_marker_sets_the_browser_language(page, echo_app_url):
    page.goto(echo_app_url)
    assert page.evaluate("navigator.language") == "fr-FR"


def test_screenshot_names_keep_only_safe_characters():
    assert screenshot_name("test_import[fr-FR/zh CN]") == "test_import_fr-FR_zh_CN"
