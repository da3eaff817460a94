"""What the dataset service does, one module per area: items entering a dataset (upload
and ingest, ``items``), DQL queries (``queries``) and item changes (``changes``)."""
