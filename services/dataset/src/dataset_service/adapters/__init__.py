"""Outbound clients of the dataset service: the S3 bucket of item blobs, media sniffing."""
