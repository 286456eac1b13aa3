"""Ingestion: the catalog CSV, analysing songs through the featurizer and classifier, building a generation."""
