"""The video pipeline: read -> detect/track -> align+embed -> match -> annotate -> output.

One module per stage (``detect``, ``embed``, ``match``, ``annotate``, ``output``) on the
contract of ``stage``; ``graph`` runs them in threads; ``build`` wires them from a config.
"""

from streamrec.pipeline.build import Pipeline, build_pipeline
from streamrec.pipeline.graph import Camera
from streamrec.pipeline.summary import Summary

__all__ = ["Camera", "Pipeline", "Summary", "build_pipeline"]
