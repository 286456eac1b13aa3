"""Make an API key for the recommender: prints the key (give it to the caller, once) and the
line to append to the API_KEYS_FILE Secret (only the hash is stored).

    python -m devtools.apikey backend-team-a
"""

from __future__ import annotations

import secrets
import sys

from services.common.auth import digest


def main() -> None:
    if len(sys.argv) != 2 or ":" in sys.argv[1]:
        raise SystemExit("usage: python -m devtools.apikey NAME   (a name without ':')")
    key = secrets.token_urlsafe(32)
    print(f"key (give to the caller):  {key}")
    print(f"line for API_KEYS_FILE:    {sys.argv[1]}:{digest(key)}")


if __name__ == "__main__":
    main()
