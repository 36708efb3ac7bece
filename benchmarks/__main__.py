"""``python -m benchmarks``: the benchmark suite (benchmarks/README.md; --help)."""

import sys

from .suite import main

sys.exit(main())
