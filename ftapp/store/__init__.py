"""The SQLite store: connections, migrations, and one module per family of tables."""
