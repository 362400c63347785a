"""Headless entries behind ``app.py tune`` and ``app.py generate``."""
