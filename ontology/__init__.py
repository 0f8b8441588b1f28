"""Bundled OWL ontology, SHACL shapes and JSON-LD context (read with importlib.resources)."""
