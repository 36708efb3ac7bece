"""Recognize the people in a photo.

    python samples/recognize_photo.py photo.jpg --gallery gallery.db [--output annotated.jpg]

Prints one line per face: its box, the name (or "unknown") and the similarity score. Without
--gallery every face is unknown. --config FILE chooses the models and settings (a streamrec
YAML config, e.g. ``models: {detector: buffalo_s, recognizer: buffalo_s}``).
"""

from __future__ import annotations

import argparse

import cv2

import streamrec
from streamrec.files import write_private  # faces are private: the file is created 0600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo")
    parser.add_argument("--gallery", help="gallery file made with 'streamrec gallery import'")
    parser.add_argument("--config", help="streamrec YAML config (models, thresholds)")
    parser.add_argument("--output", help="write a copy with boxes and names here (JPEG)")
    args = parser.parse_args()

    analyzer = streamrec.FaceAnalyzer(args.config)
    matcher = None
    if args.gallery:
        with analyzer.open_gallery(args.gallery) as gallery:
            matcher = gallery.matcher()
    image = streamrec.read_image(args.photo)
    faces = analyzer.analyze(image, matcher)
    print(f"{args.photo}: {len(faces)} face(s)")
    for face in faces:
        x1, y1, x2, y2 = (round(float(v)) for v in face.bbox)
        score = "" if face.score is None else f" {face.score:.2f}"
        print(f"  [{x1},{y1},{x2},{y2}] {face.name or 'unknown'}{score}")
        streamrec.draw_face(image, face.bbox, face.name, face.score)
    if args.output:
        write_private(args.output, cv2.imencode(".jpg", image)[1].tobytes())
        print(f"wrote {args.output}")


if __name__ == "__main__":
    try:
        main()
    except streamrec.StreamrecError as exc:  # a missing model, photo, video or gallery
        raise SystemExit(f"error: {exc}") from None
