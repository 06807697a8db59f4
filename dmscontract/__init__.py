"""What the modeller's client (``dmsbatch``) and the backend (``shared``, ``functions``) must agree on.

The run spec (its schema, its text, profiles merged under it, each run kind's
section), the run's blob layout and documents (request, status), the messages
that request runs, run ids, the study-zip rules, and the storage and Batch
clients both use to reach them. It is installed with the client (the wheel
holds ``dmsbatch`` and ``dmscontract``) and deployed with the Functions app, so
the two sides cannot drift. It imports neither side.
"""
