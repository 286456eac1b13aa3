"""A local stand-in for tensorflow_model_server: same gRPC API, same models.config."""
