"""Watch a webcam or an RTSP camera and print who arrives and who leaves.

    python samples/watch.py rtsp://user:password@camera/stream --gallery gallery.db
    python samples/watch.py 0 --gallery gallery.db --seconds 60      # webcam 0, for a minute

Runs until Ctrl-C, SIGTERM, the end of --seconds or the end of the stream (a video file works
too). A person arrives with their first identification (an unknown person with their
``unknown-N`` label) and leaves when their last track on screen ends.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections import defaultdict

import streamrec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("camera", help="rtsp:// URL, webcam index (0) or a video file")
    parser.add_argument("--gallery", help="gallery file (none: everyone is unknown)")
    parser.add_argument("--config", help="streamrec YAML config (models, live.rtsp_transport)")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds")
    args = parser.parse_args()

    events = streamrec.process(args.camera, gallery=args.gallery, config=args.config)
    # Ctrl-C, SIGTERM and the time limit end the run gracefully: every track still ends
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: events.stop())
    timer = None
    if args.seconds is not None:
        timer = threading.Timer(args.seconds, events.stop)
        timer.daemon = True
        timer.start()

    who: dict[int, str] = {}  # track id -> name or label
    present: defaultdict[str, set[int]] = defaultdict(set)  # name -> its tracks on screen

    def leave(track_id: int, clock: str) -> None:
        name = who.pop(track_id)
        present[name].discard(track_id)
        if not present[name]:
            print(f"{clock}  {name} left", flush=True)

    print(f"watching {args.camera}", flush=True)
    with events:
        for event in events:
            clock = time.strftime("%H:%M:%S", time.localtime(event.captured or time.time()))
            name = event.fields.get("name") or event.fields.get("label")
            if event.event in ("identified", "renamed", "unknown") and name:
                if who.get(event.track_id, name) != name:  # an unknown named, or a rename
                    leave(event.track_id, clock)
                who[event.track_id] = name
                if not present[name]:
                    print(f"{clock}  {name} arrived", flush=True)
                present[name].add(event.track_id)
            elif event.event == "track_end" and event.track_id in who:
                leave(event.track_id, clock)
    if timer is not None:
        timer.cancel()
    print("stopped", flush=True)


if __name__ == "__main__":
    try:
        main()
    except streamrec.StreamrecError as exc:  # a missing model, photo, video or gallery
        raise SystemExit(f"error: {exc}") from None
