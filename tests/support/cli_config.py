"""Helpers shared by tests/unit/test_cli_config.py and tests/e2e/test_cli_config_e2e.py."""
from __future__ import annotations

from local.batch import DEV_BATCH_ACCOUNT_KEY


AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
WRONG_KEY = "d3Jvbmcta2V5LW5vdC1hLXNlY3JldC1hdC1hbGwtZm9yLXRlc3Rpbmc="
SECRETS = (AZURITE_KEY, WRONG_KEY, DEV_BATCH_ACCOUNT_KEY, "c2VjcmV0LWJhdGNoLWtleQ==")


def no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, "a key was printed"


# ---- mistakes in a config file: said by place, never by printing the key ----------------------

# a made-up 64-byte account key (88 base64 characters, like the portal's), and its two halves as a
# modeller's editor may wrap it: the second half ends in '==', so an INI reads it as a name of its own
# (cut at 48 characters, the first half is itself base64; cut elsewhere, it is not)
FAKE_KEY = "q7NsPz4xVbUe2kYd9TfW1mLc8RgHj3AiQo6XnBrE5wCtMy0SaKvDlFuJ7pZeG2hI4sOb9cNx1qWzVyT8rUkLmA=="


def no_part_of_the_key(text: str, key: str = FAKE_KEY, width: int = 6) -> None:
    """Not the key, nor any run of ``width`` of its characters (a piece of a key is still a leak)."""
    pieces = {key[i:i + width] for i in range(len(key) - width + 1)}
    leaked = sorted(piece for piece in pieces if piece.strip("=") == piece and piece in text)
    assert not leaked, f"part of the key was printed: {leaked[:3]}"
