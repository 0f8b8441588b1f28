"""Bundled SPARQL queries, one question per .rq file (read with importlib.resources)."""
