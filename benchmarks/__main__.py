"""``python -m benchmarks``: the end-to-end video throughput benchmark (benchmarks/README.md)."""

import sys

from .video_fps import main

sys.exit(main())
