"""Storage helpers: Hadoop file listing and Parquet footers, S3 via boto3."""
