"""Declarative windowed-aggregate features: definitions, the one-pass engine, the pipeline."""
