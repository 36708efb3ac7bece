"""FrameMux: files block, live lanes drop their oldest droppable frame, never a marker."""

from __future__ import annotations

from streamrec.pipeline.mux import FrameMux


def test_live_lane_drops_oldest_frame_but_keeps_markers() -> None:
    mux: FrameMux[str] = FrameMux()
    mux.add("cam", live=True, capacity=2)
    mux.put("cam", "gap", droppable=False)
    mux.put("cam", "f1")
    mux.put("cam", "f2")  # full: f1 goes, the gap stays
    mux.put("cam", "f3")  # full: f2 goes
    mux.close("cam")
    got = []
    while (item := mux.get(timeout=0.1)) is not None:
        got.append(item[1])
    assert got == ["gap", "f3"]
    assert mux.dropped("cam") == 2


def test_round_robin_over_cameras() -> None:
    mux: FrameMux[str] = FrameMux()
    for cam in ("a", "b"):
        mux.add(cam, live=False, capacity=4)
        for i in range(2):
            mux.put(cam, f"{cam}{i}")
        mux.close(cam)
    order = []
    while (item := mux.get(timeout=0.1)) is not None:
        order.append(item[1])
    assert order == ["a0", "b0", "a1", "b1"]
