"""Classifier service: five fold models on TF Serving, majority vote."""
