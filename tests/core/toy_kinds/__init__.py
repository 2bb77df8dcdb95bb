"""Toy kinds for tests/core/test_where_to_add.py, one module each, as docs/ARCHITECTURE.md's "where to add"
table says a new kind is written: each imports only the interface it implements (never the registry that
will name it), and the test registers it through exactly the registration the table names."""
