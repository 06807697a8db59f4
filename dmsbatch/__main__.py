"""``python -m dmsbatch``: the same as the ``dmsbatch`` command."""
from dmsbatch.cli import main

main()
