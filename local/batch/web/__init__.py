"""The HTTP layer of the local Batch service (laid out in the next commit)."""
