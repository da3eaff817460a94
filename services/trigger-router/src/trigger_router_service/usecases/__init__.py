"""What the router does, one module per area: the routes and handlers call these."""
