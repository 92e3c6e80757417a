"""The daemon store: tables, migrations, queries."""
