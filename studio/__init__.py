"""Gradio UI: one module per tab, thin handlers."""
