"""Outputs of the pipeline: event sinks (JSONL file, MQTT, webhook, fan-out) and video files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamrec.sinks.events import (
    EventSink,
    FanoutSink,
    JsonlEventSink,
    SinkError,
    event_json,
)
from streamrec.sinks.mqtt import MqttEventSink
from streamrec.sinks.video import VideoWriter
from streamrec.sinks.webhook import WebhookEventSink

if TYPE_CHECKING:
    from streamrec.config import Config

__all__ = [
    "EventSink",
    "FanoutSink",
    "JsonlEventSink",
    "MqttEventSink",
    "SinkError",
    "VideoWriter",
    "WebhookEventSink",
    "event_json",
    "event_sinks",
]


def event_sinks(cfg: Config, jsonl: str | None = None) -> list[EventSink]:
    """The event sinks the config's ``events:`` (and ``--events FILE``) ask for."""
    sinks: list[EventSink] = []
    try:
        path = jsonl or cfg.events.jsonl
        if path:
            sinks.append(JsonlEventSink(path))
        if cfg.events.mqtt is not None:
            sinks.append(MqttEventSink.from_config(cfg.events.mqtt))
        if cfg.events.webhook is not None:
            w = cfg.events.webhook
            sinks.append(
                WebhookEventSink(w.url, headers=w.headers, timeout=w.timeout, retries=w.retries)
            )
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks
