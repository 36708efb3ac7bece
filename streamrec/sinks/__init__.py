"""Outputs of the pipeline: event sinks (JSONL file, MQTT, webhook, fan-out) and video files."""

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

__all__ = [
    "EventSink",
    "FanoutSink",
    "JsonlEventSink",
    "MqttEventSink",
    "SinkError",
    "VideoWriter",
    "WebhookEventSink",
    "event_json",
]
