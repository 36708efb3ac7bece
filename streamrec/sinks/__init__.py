"""Outputs of the pipeline: event sinks (JSONL file, MQTT, webhook, fan-out) and video files.

The MQTT, webhook and video modules are imported when first used (a run that does not use them
does not pay for paho, urllib or PyAV's encoders at start).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from streamrec.sinks.events import (
    EventSink,
    FanoutSink,
    JsonlEventSink,
    SinkErasure,
    SinkError,
    event_json,
)

if TYPE_CHECKING:
    from streamrec.config import Config
    from streamrec.sinks.mqtt import MqttEventSink
    from streamrec.sinks.video import VideoWriter
    from streamrec.sinks.webhook import WebhookEventSink

_LAZY = {
    "MqttEventSink": "streamrec.sinks.mqtt",
    "VideoWriter": "streamrec.sinks.video",
    "WebhookEventSink": "streamrec.sinks.webhook",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EventSink",
    "FanoutSink",
    "JsonlEventSink",
    "MqttEventSink",
    "SinkErasure",
    "SinkError",
    "VideoWriter",
    "WebhookEventSink",
    "event_json",
    "event_sinks",
]


def event_sinks(
    cfg: Config, jsonl: str | None = None, threshold: float | None = None
) -> list[EventSink]:
    """The event sinks the config's ``events:`` (and ``--events FILE``) ask for; ``threshold``
    is the recognition threshold in use (default: the configured one, else the registry's for
    the configured recognizer)."""
    sinks: list[EventSink] = []
    try:
        path = jsonl or cfg.events.jsonl
        if path:
            sinks.append(JsonlEventSink(path))
        if cfg.events.mqtt is not None:
            from streamrec.sinks.mqtt import MqttEventSink

            chosen = threshold if threshold is not None else cfg.recognition.threshold
            if chosen is None:  # the models are not loaded here: the registry's by name
                from streamrec.models.registry import configured_threshold

                chosen = configured_threshold(cfg.models)
            sinks.append(MqttEventSink.from_config(cfg.events.mqtt, chosen))
        if cfg.events.webhook is not None:
            from streamrec.sinks.webhook import WebhookEventSink

            w = cfg.events.webhook
            sinks.append(
                WebhookEventSink(w.url, headers=w.headers, timeout=w.timeout, retries=w.retries)
            )
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks
