"""The knowledge graph: vocabulary, export to RDF, stores, queries, semantic linking, FAIR metadata."""
