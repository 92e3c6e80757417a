"""Renderers: the result model to JSON, terminal tables and the other output formats."""
