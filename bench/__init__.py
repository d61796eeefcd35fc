"""``make bench``: the receiver against a parse-and-ack ceiling and a naive SQLite receiver, under wrk."""
