"""Threaded video pipeline: read, detect/track, align+embed, match, annotate, output."""

from .graph import Camera, Pipeline, PipelineOptions
from .summary import Summary

__all__ = ["Camera", "Pipeline", "PipelineOptions", "Summary"]
