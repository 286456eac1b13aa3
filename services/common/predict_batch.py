"""How many spectrograms one Predict may carry: the contract between ingestion's batches
(services/recommender/catalog/analysis.py), the classifier's ClassifyBatch and TF Serving.

TF Serving refuses a Predict larger than its max_batch_size
(deploy/components/tfserving-batching/batching.config; a test keeps the two equal).
"""

MAX_PREDICT_BATCH = 8
