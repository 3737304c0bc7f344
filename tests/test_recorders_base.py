"""Reader contract: read-only packets, fixed windows, strictness, summary caching, options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from respike.events import EVENT_DTYPE, make_events
from respike.recorders import EventFileError, Frame, ReadOptions, open_events
from respike.recorders.base import MAX_HELD_FRAMES, _windows


def _packets(times: list[list[int]]) -> list[np.ndarray]:
    return [make_events(t, [0] * len(t), [0] * len(t), [1] * len(t)) for t in times]


def test_windows_cover_gaps_and_split_packets() -> None:
    windows = list(_windows(iter(_packets([[0, 3, 5], [9, 10, 31]])), 10, None, None))
    assert [(w.start, w.end) for w in windows] == [(0, 10), (10, 20), (20, 30), (30, 40)]
    assert [w.events["t"].tolist() for w in windows] == [[0, 3, 5, 9], [10], [], [31]]
    assert all(w.events.dtype == EVENT_DTYPE and not w.events.flags.writeable for w in windows)


def test_windows_start_and_end() -> None:
    windows = list(_windows(iter(_packets([[0, 3, 5], [9, 10, 31]])), 4, 3, 12))
    got = [(w.start, w.events["t"].tolist()) for w in windows]
    assert got == [(3, [3, 5]), (7, [9, 10]), (11, [])], "the window holding end_us is the last"


def test_frames_ride_in_their_window() -> None:
    image = np.zeros((2, 2), np.uint8)
    a, b, c = Frame(4, image), Frame(12, image), Frame(45, image)
    p1, p2, p3 = _packets([[0, 3, 5, 9], [10], [31]])
    windows = list(_windows(iter([p1, a, p2, b, p3, c]), 10, None, None))
    assert [[f.t for f in w.frames] for w in windows] == [[4], [12], [], [45]]
    assert windows[-1].end == 40, "frames after the last event come with the last window"


def test_frames_on_another_clock_are_not_held_forever() -> None:
    image = np.zeros((1, 1), np.uint8)
    far = [Frame(10**15 + k, image) for k in range(MAX_HELD_FRAMES + 3)]
    (packet,) = _packets([[0, 1, 2, 50]])
    windows = list(_windows(iter([*far, packet]), 10, None, None))
    delivered = [f.t for w in windows for f in w.frames]
    assert sorted(delivered) == [f.t for f in far], "every frame is delivered exactly once"
    assert len(windows[0].frames) == 3, "the overflow goes out with the first window"


def test_packets_are_read_only_and_passes_repeat(shared_data: Path) -> None:
    reader = open_events(shared_data / "tonic_samples" / "sample_nmnist.bin")
    first = list(reader.packets())
    assert all(not p.flags.writeable for p in first)
    with pytest.raises(ValueError):
        first[0]["x"][0] = 1
    second = list(reader)
    assert [p.shape for p in first] == [p.shape for p in second]


def test_strict_and_lenient_passes(tmp_path: Path, shared_data: Path) -> None:
    cut = tmp_path / "cut.bin"
    cut.write_bytes(
        (shared_data / "tonic_samples" / "sample_nmnist.bin").read_bytes()[: 5 * 100 + 2]
    )
    strict = open_events(cut)
    with pytest.raises(EventFileError):
        strict.summary()
    lenient = open_events(cut, strict=False)
    summary = lenient.summary()
    assert summary.event_count == 100 and summary.error is not None and "truncated" in summary.error
    assert lenient.summary() is summary, "the summary is computed once"


def test_options_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="packet_events"):
        ReadOptions(packet_events=0)
    with pytest.raises(ValueError, match="time_unit"):
        ReadOptions(time_unit="minutes")
    path = tmp_path / "one.bin"
    path.write_bytes(bytes([1, 2, 0, 0, 9]))
    with pytest.raises(ValueError, match="duration_us"):
        open_events(path).windows(0)
