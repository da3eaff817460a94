"""Pure rules of billing: replica meters (intervals merged from replica events in any
order), rates and costs, usage per service and UTC day, budget transitions, and the
figures per model version (acceptance, cost per accepted label).

Nothing here does I/O; the repository persists what these functions decide.
"""
