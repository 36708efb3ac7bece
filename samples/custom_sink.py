"""A custom event sink: how long each person was on screen.

    python samples/custom_sink.py clip.mp4 --gallery gallery.db

An event sink is any object with ``write(event)`` and ``close()``. It receives every event of
the run from the pipeline's thread (alongside the sinks of the config: JSONL file, MQTT,
webhook) and is closed at the end, also after Ctrl-C. This one adds up, per person, the time
from each track's identification to its end, and prints the table when it is closed.
"""

from __future__ import annotations

import argparse
import threading
from collections import defaultdict

import streamrec


class ScreenTime:
    """Seconds on screen per person (from identification to the end of the track)."""

    def __init__(self) -> None:
        self.named: dict[int, tuple[str, float]] = {}  # track id -> (name, time named)
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.tracks: defaultdict[str, int] = defaultdict(int)
        self.lock = threading.Lock()  # a sink may be called from several threads

    def write(self, event: streamrec.Event) -> None:
        with self.lock:
            if event.event in ("identified", "renamed") and event.fields["name"]:
                self.named[event.track_id] = (event.fields["name"], event.time)
            elif event.event == "track_end" and event.track_id in self.named:
                name, since = self.named.pop(event.track_id)
                self.seconds[name] += event.time - since
                self.tracks[name] += 1

    def close(self) -> None:
        with self.lock:
            for name, seconds in sorted(self.seconds.items(), key=lambda kv: -kv[1]):
                print(f"{name}: {seconds:.1f} s on screen in {self.tracks[name]} track(s)")
            if not self.seconds:
                print("nobody known was on screen")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("--gallery", help="gallery file (none: everyone is unknown)")
    parser.add_argument("--config", help="streamrec YAML config (models, thresholds)")
    args = parser.parse_args()

    summary = streamrec.process(
        args.video, gallery=args.gallery, config=args.config, sinks=[ScreenTime()]
    ).run()
    print(f"{summary.frames} frames in {summary.wall_time:.1f} s")


if __name__ == "__main__":
    try:
        main()
    except streamrec.StreamrecError as exc:  # a missing model, photo, video or gallery
        raise SystemExit(f"error: {exc}") from None
