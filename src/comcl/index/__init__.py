"""The indexing stage: each dataset, from its public format, as one Parquet table."""
