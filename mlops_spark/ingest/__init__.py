"""Ingestion into bronze Delta tables: raw files (local or s3a) and Kafka topics."""
