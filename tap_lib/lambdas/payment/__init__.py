"""Payment-processing function: records a payment in PostgreSQL and logs it to S3."""
