"""The face history's retroactive events on a real MQTT broker (mosquitto, 127.0.0.1): naming
the past is news for Home Assistant, never a person in view now."""

from __future__ import annotations

import json

from test_mqtt import (  # noqa: F401  (broker: a fixture)
    Broker,
    Subscriber,
    broker,
    pytestmark,
    retained,
    wait_until,
)

from streamrec.history.naming import retroactive_event
from streamrec.history.records import Relabelled
from streamrec.sinks import MqttEventSink


def test_a_retroactive_event_reaches_mqtt_as_history_never_as_presence(
    broker: Broker,  # noqa: F811
) -> None:
    sub = Subscriber(broker.port, "history", topic="rec/#", clean=True)
    sink = MqttEventSink("127.0.0.1", broker.port, topic_prefix="rec", presence_timeout=60)
    try:
        sink.write(retroactive_event(Relabelled(3, "unknown-4", "Jane", 5, 10.0, 20.0)))
        wait_until(lambda: sub.last("rec/history") is not None, "the retroactive event")
        event = json.loads(sub.last("rec/history") or "")
        assert event["event"] == "identified" and event["retroactive"] is True
        assert event["name"] == "Jane" and event["previous"] == "unknown-4"
        assert sink.sync(10)
        kept = retained(broker.port)
        assert not any("jane" in t.lower() or "history" in t for t in kept), kept
        with sub.lock:
            topics = {m.topic for m in sub.messages}
        # no person, camera or presence topic (only the bridge's own)
        assert {t for t in topics if not t.startswith("rec/bridge/")} == {"rec/history"}
    finally:
        sink.close(timeout=5)
        sub.close()
