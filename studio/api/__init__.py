"""The REST API (Google AI Studio's v1beta shape): routes, request bodies, content, shapes and
the service between the API and the studio; and the OpenAI-compatible /v1 (``openai_compat``)."""
