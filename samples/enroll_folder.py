"""Enrol people from a folder, with a progress bar.

    python samples/enroll_folder.py people/ --gallery gallery.db

``people/`` holds one sub-folder of photos per person (``people/Jane Doe/1.jpg`` ...). Each
photo with exactly one face is enrolled; the others are reported. The same as
``streamrec gallery import people/ --gallery gallery.db``, written out with the Python API.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import streamrec
from streamrec.enrolment import import_folder, person_folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="one sub-folder of photos per person")
    parser.add_argument("--gallery", required=True, help="gallery file (created if needed)")
    parser.add_argument("--config", help="streamrec YAML config (models, enrollment)")
    args = parser.parse_args()

    person_folders(args.folder)  # checked before the models load and the gallery is made
    analyzer = streamrec.FaceAnalyzer(args.config)
    with analyzer.open_gallery(args.gallery) as gallery:
        recognition = streamrec.Recognition(analyzer, gallery)  # who is who, and enrolment
        # the bar goes to stderr, and only when it is a terminal
        for report in import_folder(recognition, args.folder, progress=True):
            for photo, reason in report.skipped:
                print(f"skipped {photo}: {reason}")
            print(f"{report.name}: {len(report.added)} photo(s) enrolled, {report.total} in total")
        print(f"{len(gallery.people())} people in {args.gallery}")

if __name__ == "__main__":
    try:
        main()
    except streamrec.StreamrecError as exc:  # a missing model, photo, video or gallery
        raise SystemExit(f"error: {exc}") from None
