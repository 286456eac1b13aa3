"""Featurizer service: audio bytes in, log-mel spectrogram and feature vector out."""
