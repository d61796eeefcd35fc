"""The storage seam: one Database (database.py) that picks a backend when it opens, SQLite (sqlite/) or
PostgreSQL (postgres/), each fulfilling the Backend contract (backend.py); the writer's queue (writer.py);
and what is true for both, in shared modules: batch classification (batch.py), read queries (queries.py),
the outbox (outbox.py), retention (retention.py) and the schema's shared parts (schema.py)."""
