"""Spark runtime: the one SparkSession factory, Delta helpers, JVM dependencies, schemas."""
