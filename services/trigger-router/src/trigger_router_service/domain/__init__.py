"""Pure rules of the trigger-router: trigger specs and matching, execution states,
routing results and the autoscaler's decisions.

Nothing here does I/O. The HTTP routes, the item-event consumer and the
autoscaler all go through these modules, and the database's uniqueness
constraints back the ``Once``/redelivery rules up where two replicas race.
"""
