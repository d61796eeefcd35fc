"""The SQLite backend: the embedded default, a file one receiver owns."""
