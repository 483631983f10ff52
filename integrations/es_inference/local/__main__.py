"""``python -m es_inference.local``: run the local inference server."""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
