"""Enrol people from a folder, with a progress bar.

    python samples/enroll_folder.py people/ --gallery gallery.db

``people/`` holds one sub-folder of photos per person (``people/Jane Doe/1.jpg`` ...). Each
photo with exactly one face is enrolled; the others are reported. The same as
``streamrec gallery import people/ --gallery gallery.db``, written out with the Python API.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

import streamrec
from streamrec.gallery.enroll import enroll_images, image_files, person_folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="one sub-folder of photos per person")
    parser.add_argument("--gallery", required=True, help="gallery file (created if needed)")
    parser.add_argument("--config", help="streamrec YAML config (models, enrollment)")
    args = parser.parse_args()

    people = {d.name: image_files(d) for d in person_folders(args.folder)}  # checked first
    analyzer = streamrec.FaceAnalyzer(args.config)
    with analyzer.open_gallery(args.gallery) as gallery:
        # the bar goes to stderr, and only when it is a terminal
        bar = tqdm(total=sum(map(len, people.values())), unit="photo", disable=None)
        for name, photos in people.items():
            bar.set_postfix_str(name)
            report = enroll_images(analyzer, gallery, name, photos)
            bar.update(len(photos))
            for photo, reason in report.skipped:
                bar.write(f"skipped {photo}: {reason}")
            bar.write(f"{name}: {len(report.added)} photo(s) enrolled, {report.total} in total")
        bar.close()
        print(f"{len(gallery.people())} people in {args.gallery}")


if __name__ == "__main__":
    main()
