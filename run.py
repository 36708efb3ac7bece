#!/usr/bin/env python3
"""Thin entry point: the same CLI as the ``streamrec`` console script."""

import sys

from streamrec.cli import main

if __name__ == "__main__":
    sys.exit(main())
