"""Domain code: datasets, prompt templates, models. Never imports gradio."""
