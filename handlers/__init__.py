"""HTTP handlers and middleware. Handlers never touch SQLite: they hand records to the writer."""
