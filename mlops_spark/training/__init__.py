"""Training sets, model training, registry and promotion."""
