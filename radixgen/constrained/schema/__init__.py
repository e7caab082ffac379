"""JSON schema -> regex with marks for the pushdown (see constrained/__init__.py for the layers)."""
