#!/usr/bin/env python
"""Build the FAISS index from an FAQ corpus: same as ``python -m retriever build``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from retriever.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["build", *sys.argv[1:]]))
