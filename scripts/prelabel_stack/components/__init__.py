"""Everything ``up`` brings up."""
