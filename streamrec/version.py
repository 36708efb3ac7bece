"""streamrec's version (the package's and the CLI's; shown by the HTTP API, metrics and MQTT)."""

__version__ = "0.1.0"
