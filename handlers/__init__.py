"""HTTP handlers and middleware. Pushes go to the single writer; reads go through storage.queries on
read-only connections. No handler runs SQL of its own."""
