"""Regexes as byte-level automata and the pushdowns over them (see constrained/__init__.py)."""
