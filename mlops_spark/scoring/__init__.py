"""Batch scoring: feature lookup as of the scoring time, ``mlflow.pyfunc.spark_udf`` over a safely loaded model, Delta output."""
