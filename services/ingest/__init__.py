"""In-process catalog ingestion: the featurizer's pipeline, the fold models and the index build in one job."""
