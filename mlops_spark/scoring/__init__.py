"""Batch scoring: feature lookup as of the scoring time, an Arrow model UDF, Delta output."""
