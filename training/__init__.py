"""Training, evaluation and SavedModel export of the fold models."""
