"""The PostgreSQL backend: a server that several receivers may share."""
