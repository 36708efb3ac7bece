"""Serving on a Ray cluster: a driver on the head, one actor per camera."""
