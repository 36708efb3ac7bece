"""Iterate over the events of a video in Python.

    python samples/video_events.py clip.mp4 --gallery gallery.db [--start 2 --end 8]

Prints each event as it happens: the time in the video, the track, what happened and who.
The loop may stop early (``break``): the pipeline then stops and every track is ended.
"""

from __future__ import annotations

import argparse

import streamrec


def describe(event: streamrec.Event) -> str:
    f = event.fields
    if event.event == "identified":
        return f"{f['name']} ({f['score']:.2f})"
    if event.event == "renamed":
        return f"now {f['name']}"
    if event.event == "unknown":
        return f["label"]
    if event.event == "track_end":
        who = f["name"] or f.get("unknown") or "nobody known"
        return f"{who}, frames {f['first_frame']}-{f['last_frame']}"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", help="a video file or URL")
    parser.add_argument("--gallery", help="gallery file (none: everyone is unknown)")
    parser.add_argument("--config", help="streamrec YAML config (models, thresholds)")
    parser.add_argument("--start", type=float, help="seconds into the video to begin at")
    parser.add_argument("--end", type=float, help="seconds into the video to stop at")
    args = parser.parse_args()

    events = streamrec.process(
        args.video, gallery=args.gallery, config=args.config, start=args.start, end=args.end
    )
    with events:
        for event in events:
            what = f"{event.event:11} {describe(event)}"
            print(f"{event.time:7.2f}s  track {event.track_id:<3} {what}")
    if events.summary is not None:  # None when the loop was left early
        print(events.summary.format())


if __name__ == "__main__":
    try:
        main()
    except streamrec.StreamrecError as exc:  # a missing model, photo, video or gallery
        raise SystemExit(f"error: {exc}") from None
