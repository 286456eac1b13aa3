"""Picking the answer: routing, the rules, k-NN merge and MMR, paths, reasons; run off the event loop."""
