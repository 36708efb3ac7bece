"""MQTT: events, per-person presence, snapshots, Home Assistant discovery and Double Take
topics (the event sink), Frigate's events (read by the Frigate bridge) and the erase command's
clearing of retained topics, all over :class:`~streamrec.sinks.mqtt.link.MqttLink`.

Topics of the event sink (``<prefix>`` is ``topic_prefix``; ``<camera>`` is ``event.camera or
event.source`` made topic-safe; ``<person>`` the person's name as a topic-safe slug, see
:mod:`~streamrec.sinks.mqtt.topics`):

- ``<prefix>/<camera>/events``: every event as JSON, QoS ``qos`` (1 by default), not retained,
  buffered while the broker is away (:mod:`~streamrec.sinks.mqtt.link`: delivery).
- presence (:mod:`~streamrec.sinks.mqtt.presence`): ``<prefix>/<camera>/status``,
  ``<prefix>/<camera>/last_name``, ``<prefix>/<camera>/people``, ``<prefix>/people/<person>``.
- ``<prefix>/<camera>/snapshot`` (:mod:`~streamrec.sinks.mqtt.snapshots`).
- ``<prefix>/bridge/status``: retained "online" while this process is connected. MQTT allows
  one last will per connection, so the will is on this bridge topic ("offline"): if the
  process dies, the bridge goes offline while the camera topics keep their last value.
  Consumers must read both (the Home Assistant entities do, with ``availability_mode: all``).
  Use a distinct ``topic_prefix`` per process.
- Home Assistant discovery (:mod:`~streamrec.sinks.mqtt.discovery`, ``ha_discovery``).
- With ``double_take_topics``: ``double-take/matches/<person>`` and
  ``double-take/cameras/<camera>`` (:mod:`~streamrec.sinks.mqtt.double_take`).

State of earlier runs: on its first connection the sink reads the retained people, last-name,
people-in-view and snapshot topics under its prefix (a scan: it subscribes, then publishes a
marker on ``<prefix>/bridge/scan``: when the marker comes back the broker has sent every
retained message), then unsubscribes; the presence and the publishers take them over.
Each concern is a :class:`~streamrec.sinks.mqtt.publisher.Publisher`.
"""

from streamrec.sinks.mqtt.link import WINDOW, Endpoint, MqttLink, Scan, Tls
from streamrec.sinks.mqtt.sink import MqttEventSink
from streamrec.sinks.mqtt.snapshots import encode_snapshot
from streamrec.sinks.mqtt.topics import camera_segment, person_slug, topic_segment

__all__ = [
    "WINDOW",
    "Endpoint",
    "MqttEventSink",
    "MqttLink",
    "Scan",
    "Tls",
    "camera_segment",
    "encode_snapshot",
    "person_slug",
    "topic_segment",
]
