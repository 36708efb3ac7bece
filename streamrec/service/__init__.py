"""The headless service on top of the pipeline: daemon, HTTP server, live status, metrics."""
