"""Enrolment: people added to the gallery from photos, a folder of people, or a video clip,
through the process's Recognition service."""

from streamrec.enrolment.photos import (
    EnrollReport,
    enroll_images,
    import_folder,
    person_folders,
    photo_sample,
)
from streamrec.enrolment.video import VideoPick, enroll_video, pick_video_faces

__all__ = [
    "EnrollReport",
    "VideoPick",
    "enroll_images",
    "enroll_video",
    "import_folder",
    "person_folders",
    "photo_sample",
    "pick_video_faces",
]
