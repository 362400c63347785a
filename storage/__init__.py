"""SQLite through sqlite-utils: the only package that knows SQL and table names."""
