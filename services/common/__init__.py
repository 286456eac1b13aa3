"""Pieces every musicrec server shares: config, JSON logs, metrics, the gRPC bootstrap."""
