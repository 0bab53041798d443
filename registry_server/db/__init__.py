"""The metadata database: tables, the engine and sessions, and the schema migrations."""
