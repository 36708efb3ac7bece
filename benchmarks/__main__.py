"""``python -m benchmarks``: the benchmark suite of issue 6 (benchmarks/README.md)."""

import sys

from .suite import main

sys.exit(main())
