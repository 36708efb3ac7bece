"""The model input blob equals OpenCV's ``blobFromImages`` (the reference it replaces)."""

import cv2
import numpy as np
import pytest

from streamrec.models.blob import nchw


@pytest.mark.parametrize("shape", [(384, 640, 3), (112, 112, 3), (33, 47, 3)])
@pytest.mark.parametrize(("mean", "std", "rgb"), [(127.5, 128.0, True), (127.5, 127.5, False)])
def test_the_blob_is_opencvs(
    shape: tuple[int, int, int], mean: float, std: float, rgb: bool
) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape, np.uint8) for _ in range(3)]
    expected = cv2.dnn.blobFromImages(images, 1.0 / std, shape[1::-1], (mean,) * 3, swapRB=rgb)
    got = nchw(images, mean, std, rgb)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-6)
