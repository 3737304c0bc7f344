"""EVT2/EVT3 numba kernels on hand-built word streams: events, time rules, damage, resuming."""

from __future__ import annotations

import numpy as np
import pytest

from respike.events import EVENT_DTYPE
from respike.recorders.kernels import (
    ERR_CODE,
    ERR_TIME_BACK,
    ERR_TIME_JUMP,
    ERR_X,
    decode_evt2,
    decode_evt3,
    evt2_state,
    evt3_state,
    record_words,
)


def _w(code: int, value: int) -> int:
    return (code << 12) | value


def _tuples(packet: np.ndarray) -> list[tuple[int, int, int, int]]:
    return [(int(e["t"]), int(e["x"]), int(e["y"]), int(e["p"])) for e in packet]


def _evt3(words: list[int], width: int = 640, height: int = 480, cap: int = 256):
    arr = np.array(words, dtype=np.uint16)
    packet = np.zeros(cap, EVENT_DTYPE)
    tt = np.zeros(len(words), np.int64)
    te = np.zeros(len(words), np.uint8)
    ti = np.zeros(len(words), np.uint8)
    n, nt, stop, err = decode_evt3(
        arr, 0, evt3_state(), record_words(packet), 0, width, height, tt, te, ti, 0
    )
    events = _tuples(packet[:n])
    triggers = list(zip(tt[:nt].tolist(), te[:nt].tolist(), ti[:nt].tolist(), strict=True))
    return events, triggers, stop, err


def test_evt3_single_vector_and_trigger_events() -> None:
    words = [
        _w(0, 7),  # ADDR_Y before any time: ignored like the codec does
        _w(8, 2),  # TIME_HIGH 2 -> 8192 µs
        _w(6, 5),  # TIME_LOW 5
        _w(0, 10),  # y = 10
        _w(2, (1 << 11) | 100),  # ON event at x=100
        _w(3, 200),  # VECT_BASE_X 200, OFF
        _w(4, 0b100000000101),  # VECT_12: x = 200, 202, 211
        _w(5, 0b10000001),  # VECT_8 after 12: x = 212, 219
        _w(10, (3 << 8) | 1),  # trigger id 3, rising edge
        _w(6, 9),
        _w(2, 1),  # OFF event at x=1, t = 8192 + 9
    ]
    events, triggers, stop, err = _evt3(words)
    assert err == 0 and stop == len(words)
    t0 = 8192 + 5
    assert events == [
        (t0, 100, 10, 1),
        (t0, 200, 10, 0),
        (t0, 202, 10, 0),
        (t0, 211, 10, 0),
        (t0, 212, 10, 0),
        (t0, 219, 10, 0),
        (8192 + 9, 1, 10, 0),
    ]
    assert triggers == [(t0, 1, 3)]


def test_evt3_wrap_jitter_and_damage() -> None:
    head = [_w(8, 4095), _w(6, 1), _w(0, 0)]
    events, _, _, err = _evt3([*head, _w(8, 0), _w(6, 2), _w(2, 3)])
    assert err == 0 and events == [((1 << 24) + 2, 3, 0, 0)], "4095 -> 0 is a wrap"
    jitter = [_w(8, 100), _w(6, 50), _w(0, 0), _w(2, 3), _w(8, 95), _w(6, 1), _w(2, 4)]
    events, _, _, err = _evt3(jitter)
    held = (100 << 12) + 50
    assert err == 0 and events == [(held, 3, 0, 0), (held, 4, 0, 0)], "jitter is held, not wrapped"
    _, _, stop, err = _evt3([_w(8, 100), _w(6, 1), _w(8, 50)])
    assert (stop, err) == (2, ERR_TIME_BACK)
    _, _, stop, err = _evt3([_w(8, 100), _w(6, 1), _w(8, 3000)])
    assert (stop, err) == (2, ERR_TIME_JUMP)
    _, _, stop, err = _evt3([*head, _w(11, 0)])
    assert (stop, err) == (3, ERR_CODE)
    events, _, stop, err = _evt3([*head, _w(2, 5), _w(3, 630), _w(4, 0b10000000000)])
    assert (stop, err, len(events)) == (5, ERR_X, 1), "vector reaching x=640 is outside 640 px"


def test_evt3_resumes_when_the_output_is_full() -> None:
    words = [_w(8, 1), _w(6, 0), _w(0, 4)] + [_w(2, i) for i in range(40)]
    arr = np.array(words, dtype=np.uint16)
    state = evt3_state()
    packet = np.zeros(20, EVENT_DTYPE)
    trig = [np.zeros(50, np.int64), np.zeros(50, np.uint8), np.zeros(50, np.uint8)]
    xs: list[int] = []
    start = 0
    while start < arr.shape[0]:
        n, _, start, err = decode_evt3(
            arr, start, state, record_words(packet), 0, 640, 480, *trig, 0
        )
        assert err == 0 and n <= 20 - 12 + 1
        xs.extend(packet["x"][:n].tolist())
    assert xs == list(range(40))


def test_evt2_events_wrap_and_damage() -> None:
    def cd(on: int, tlow: int, x: int, y: int) -> int:
        return (on << 28) | (tlow << 22) | (x << 11) | y

    edge = 1 << 28
    words = [cd(1, 0, 5, 5), 8 << 28 | (edge - 5), cd(1, 3, 1, 2), cd(0, 63, 639, 479)]
    words += [8 << 28 | (edge - 1), 8 << 28 | 0, cd(1, 1, 0, 0)]
    arr = np.array(words, dtype=np.uint32)
    packet = np.empty(16, EVENT_DTYPE)
    packet.view(np.uint8)[:] = 0xFF  # garbage, as np.empty may give
    out = record_words(packet)
    n, stop, err = decode_evt2(arr, 0, evt2_state(), out, 0, 640, 480)
    assert (n, stop, err) == (3, len(words), 0)
    high = (edge - 5) << 6
    assert _tuples(packet[:n]) == [
        (high + 3, 1, 2, 1),
        (high + 63, 639, 479, 0),
        ((edge << 6) + 1, 0, 0, 1),
    ]
    padding = packet[:n].view(np.uint8).reshape(-1, 16)[:, 13:]
    assert not padding.any(), "every record is written whole, padding bytes zero"
    bad = np.array([8 << 28 | 10, 3 << 28], dtype=np.uint32)
    assert decode_evt2(bad, 0, evt2_state(), out, 0, 0, 0)[1:] == (1, ERR_CODE)
    outside = np.array([8 << 28 | 10, cd(1, 0, 640, 0)], dtype=np.uint32)
    assert decode_evt2(outside, 0, evt2_state(), out, 0, 640, 480)[1:] == (1, ERR_X)


def test_record_words_needs_a_contiguous_event_packet() -> None:
    with pytest.raises(ValueError, match="C-contiguous EVENT_DTYPE"):
        record_words(np.zeros(4, EVENT_DTYPE)[::2])
