"""MqttEventSink against a real Mosquitto broker on 127.0.0.1 that is stopped and restarted.

The broker runs with persistence and the test subscriber keeps a persistent session
(clean_session=False): a restarted broker then still holds the subscription and queues what
arrives before the subscriber is back, so every event the sink delivers reaches the
subscriber. Without that, the test could not tell an event the sink lost from one that only
the subscriber missed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from streamrec.records import Event
from streamrec.sinks import MqttEventSink, SinkError

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
pytestmark = pytest.mark.skipif(
    not os.access(MOSQUITTO, os.X_OK), reason="mosquitto (Debian package) is not installed"
)
WAIT = 30.0  # seconds before a wait_until gives up (the failure case only)


def wait_until(cond: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A mosquitto process on 127.0.0.1:port that can be stopped and started again."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            textwrap.dedent(f"""\
                listener {self.port} 127.0.0.1
                allow_anonymous true
                persistence true
                persistence_location {workdir}/
                user root
                log_dest file {workdir}/mosquitto.log
                """)
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config)])
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.workdir / "mosquitto.log").read_text(errors="replace")
                    raise RuntimeError(f"mosquitto did not start:\n{log}") from None
                time.sleep(0.05)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open but nothing is read or acknowledged."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.proc.send_signal(signal.SIGCONT)  # in case it is frozen
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Subscriber:
    """A paho client with a persistent session that records every message on ``topic``."""

    def __init__(self, port: int, client_id: str, topic: str = "#", clean: bool = False) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean
        )
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self.subscribed.wait(WAIT):
            raise AssertionError("test subscriber did not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(msg)

    def on(self, topic: str) -> list[mqtt.MQTTMessage]:
        with self.lock:
            return [m for m in self.messages if m.topic == topic]

    def last(self, topic: str) -> str | None:
        found = self.on(topic)
        return found[-1].payload.decode() if found else None

    def seqs(self, topic: str) -> set[int]:
        return {json.loads(m.payload)["seq"] for m in self.on(topic)}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def subscribers() -> Iterator[list[Subscriber]]:
    made: list[Subscriber] = []
    try:
        yield made
    finally:
        for s in made:
            s.close()


def event(seq: int, camera: str = "cam1", name: str | None = None) -> Event:
    fields: dict[str, Any] = {"seq": seq}
    if name is not None:
        fields["name"] = name
    return Event(
        "identified", "rtsp://user:secret@10.0.0.9/live", seq, seq, seq / 25.0, None, camera, fields
    )


def test_events_status_and_no_loss_across_broker_restart(
    broker: Broker, subscribers: list[Subscriber]
) -> None:
    sub = Subscriber(broker.port, "test-sub")
    subscribers.append(sub)
    sink = MqttEventSink("127.0.0.1", broker.port, client_id="sink-1")
    try:
        wait_until(lambda: sink.connected, "the sink to connect")
        sink.set_status("cam1", "online")
        for i in range(20):
            sink.write(event(i))
        wait_until(lambda: sub.seqs("streamrec/cam1/events") == set(range(20)), "first events")
        msg = sub.on("streamrec/cam1/events")[0]
        row = json.loads(msg.payload)
        assert row["event"] == "identified" and row["camera"] == "cam1" and msg.qos == 1

        # Status and bridge state are retained: a client that subscribes later gets them.
        late = Subscriber(broker.port, "late", topic="streamrec/+/status", clean=True)
        subscribers.append(late)
        wait_until(lambda: late.last("streamrec/cam1/status") == "online", "retained status")
        assert late.on("streamrec/cam1/status")[0].retain
        wait_until(lambda: late.last("streamrec/bridge/status") == "online", "bridge status")

        # Events sent to a frozen broker (never acknowledged), written while it is down and
        # after it is back are all delivered.
        broker.freeze()
        for i in range(20, 40):
            sink.write(event(i))
        broker.stop()
        wait_until(lambda: not sink.connected, "the sink to notice the outage")
        for i in range(40, 90):
            sink.write(event(i))
        sink.set_status("cam1", "reconnecting")
        assert sink.pending >= 50
        broker.start()
        for i in range(90, 100):
            sink.write(event(i))
        wait_until(
            lambda: sub.seqs("streamrec/cam1/events") == set(range(100)),
            "every event after the broker restart",
        )
        wait_until(lambda: sink.pending == 0, "all events acknowledged")
        wait_until(lambda: sub.last("streamrec/cam1/status") == "reconnecting", "new status")
        assert sink.dropped == 0
    finally:
        sink.close(timeout=5)
    wait_until(lambda: sub.last("streamrec/cam1/status") == "offline", "offline on close")
    wait_until(lambda: sub.last("streamrec/bridge/status") == "offline", "bridge offline")
    sink.close()  # idempotent
    with pytest.raises(RuntimeError):
        sink.write(event(0))


def test_broker_down_at_start(broker: Broker, subscribers: list[Subscriber]) -> None:
    sub = Subscriber(broker.port, "test-sub-2", topic="streamrec/+/events")
    subscribers.append(sub)
    broker.stop()
    sink = MqttEventSink("127.0.0.1", broker.port)  # must not raise
    try:
        for i in range(30):
            sink.write(event(i, camera="rtsp://admin:pw@10.1.2.3:554/stream1"))
        assert not sink.connected and sink.pending == 30
        broker.start()
        # A URL source becomes host_port_path in the topic, without the credentials.
        topic = "streamrec/10.1.2.3_554_stream1/events"
        wait_until(lambda: sub.seqs(topic) == set(range(30)), "buffered events after start")
    finally:
        sink.close(timeout=5)


def test_home_assistant_discovery(broker: Broker, subscribers: list[Subscriber]) -> None:
    sink = MqttEventSink("127.0.0.1", broker.port, ha_discovery=True, topic_prefix="rec")
    try:
        sink.write(event(1, camera="front door", name="alice"))
        wait_until(lambda: sink.pending == 0, "the event to be acknowledged")
        sub = Subscriber(broker.port, "ha", clean=True)  # only retained messages reach it
        subscribers.append(sub)
        topic = "homeassistant/sensor/rec/front_door_last_name/config"
        wait_until(lambda: sub.last(topic) is not None, "the discovery config")
        config = json.loads(sub.last(topic) or "")
        assert config["state_topic"] == "rec/front_door/last_name"
        assert config["json_attributes_topic"] == "rec/front_door/events"
        assert config["unique_id"] == "rec_front_door_last_name"
        assert {a["topic"] for a in config["availability"]} == {
            "rec/bridge/status",
            "rec/front_door/status",
        }
        wait_until(lambda: sub.last("rec/front_door/last_name") == "alice", "last name")
        wait_until(lambda: sub.last("rec/front_door/status") == "online", "implicit status")
    finally:
        sink.close(timeout=5)


def test_last_will_when_the_process_dies(broker: Broker, subscribers: list[Subscriber]) -> None:
    sub = Subscriber(broker.port, "will-watch", topic="streamrec/bridge/status")
    subscribers.append(sub)
    code = textwrap.dedent(f"""\
        import time
        from streamrec.sinks import MqttEventSink
        sink = MqttEventSink("127.0.0.1", {broker.port})
        while not sink.connected:
            time.sleep(0.02)
        print("connected", flush=True)
        time.sleep(60)
        """)
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "connected"
        wait_until(lambda: sub.last("streamrec/bridge/status") == "online", "bridge online")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_until(lambda: sub.last("streamrec/bridge/status") == "offline", "the last will")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_buffer_is_bounded_and_close_does_not_hang_without_broker() -> None:
    sink = MqttEventSink("127.0.0.1", free_port(), buffer_max=5)
    try:
        for i in range(8):
            sink.write(event(i))
        assert sink.pending == 5 and sink.dropped == 3
    finally:
        sink.close(timeout=0.2)
    with pytest.raises(SinkError, match="topic prefix"):
        MqttEventSink("127.0.0.1", topic_prefix="a/#")
