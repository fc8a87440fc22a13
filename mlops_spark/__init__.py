"""mlops-spark: Spark-based batch feature engineering and inference platform."""

__version__ = "0.1.0"
