"""The model layer of the local Batch service: what a Batch account is and what its operations do.

State and rules only, as moto's ``models`` are for an AWS service: the account
and its pools, nodes, jobs and tasks, the operations on them (REST-shaped dicts
in and out, ``BatchServiceError`` with Batch's codes), and the pure decisions
the background workers apply (task rules, autoscale formulas, placement of
multi-instance tasks, job preparation readiness). No HTTP and no processes:
``local.batch.web`` serves these operations over HTTP and ``local.batch.node``
runs what they decide; both import the model, and the model imports neither.
Where the model has to tell the node side something, it does so through
callables it is given (see ``persistence``) or through the account's ``changed``
condition and the flags it sets on entities, never by importing it.
"""
