#!/usr/bin/env python
"""Build the FAISS index from an FAQ corpus: same as ``python -m retriever build``."""
import sys

from retriever.cli import main

if __name__ == "__main__":
    sys.exit(main(["build", *sys.argv[1:]]))
