"""Recommender: catalog, ingestion, per-genre indexes, cache and the front-door gRPC service."""
