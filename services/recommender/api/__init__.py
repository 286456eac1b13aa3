"""The front door: gRPC handlers, requests understood, answers cached and written as messages."""
