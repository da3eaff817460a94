"""What billing does beyond single events: charge running replicas in the background,
change budgets, and assemble usage reports from the repository and the domain."""
