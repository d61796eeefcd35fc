"""Everything that touches SQLite: connection setup, migrations, the single writer."""
