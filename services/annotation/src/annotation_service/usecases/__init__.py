"""What the annotation service does, one module per area: prediction ingest, annotations,
tasks, review, export. Entry points (routes, handlers) translate and call these."""
