"""The wire format: round trips for any array and header, and rejection of every broken part."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from respike.events.types import EVENT_DTYPE, make_events
from respike.stream.messages import (
    DTYPES,
    EVENTS_DTYPE_NAME,
    KINDS,
    Message,
    MessageError,
    decode,
    encode,
)

PLAIN_DTYPES = [np.dtype(name) for name in DTYPES if name != EVENTS_DTYPE_NAME]

meta_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
arrays = st.sampled_from(PLAIN_DTYPES).flatmap(
    lambda dtype: hnp.arrays(
        dtype, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)
    )
)


def roundtrip(message: Message, seq: int = 0, pt: int = 0) -> Message:
    return decode([bytes(frame) for frame in encode(message, seq=seq, pt=pt)])


@settings(max_examples=200, deadline=None)
@given(
    topic=st.text(min_size=1, max_size=40),
    kind=st.sampled_from(sorted(KINDS)),
    t=st.integers(-(2**63), 2**63 - 1),
    seq=st.integers(0, 2**64 - 1),
    named_arrays=st.dictionaries(st.text(min_size=1, max_size=10), arrays, max_size=4),
    meta=st.dictionaries(st.text(max_size=10), meta_values, max_size=5),
)
def test_roundtrip_preserves_header_and_arrays(topic, kind, t, seq, named_arrays, meta) -> None:
    message = Message(topic, kind, t, named_arrays, meta, source="src")
    decoded = roundtrip(message, seq=seq, pt=123)
    assert (decoded.topic, decoded.kind, decoded.t, decoded.seq, decoded.pt, decoded.source) == (
        topic,
        kind,
        t,
        seq,
        123,
        "src",
    )
    assert decoded.meta == meta
    assert list(decoded.arrays) == list(named_arrays)
    for name, array in named_arrays.items():
        got = decoded.arrays[name]
        assert got.dtype == array.dtype and got.shape == array.shape, name
        np.testing.assert_array_equal(got, array)


def test_event_packets_roundtrip_with_the_canonical_dtype(rng: np.random.Generator) -> None:
    n = 1000
    events = make_events(
        np.sort(rng.integers(0, 10**6, n)),
        rng.integers(0, 640, n),
        rng.integers(0, 480, n),
        rng.integers(0, 2, n),
    )
    decoded = roundtrip(Message("dvs/events", "events", 5, {"events": events}))
    assert decoded.arrays["events"].dtype == EVENT_DTYPE
    np.testing.assert_array_equal(decoded.arrays["events"], events)


def test_decoded_arrays_are_read_only_views() -> None:
    frame = np.arange(12, dtype=np.uint8).reshape(3, 4)
    decoded = roundtrip(Message("cam/frames", "frame", 0, {"frame": frame}))
    assert not decoded.arrays["frame"].flags.writeable, (
        "receivers must not be able to mutate received data"
    )


def test_non_contiguous_arrays_are_sent_as_their_values() -> None:
    base = np.arange(24, dtype=np.int16).reshape(4, 6)
    view = base[:, ::2]
    np.testing.assert_array_equal(
        roundtrip(Message("a/b", "frame", 0, {"v": view})).arrays["v"], view
    )


@pytest.mark.parametrize("dtype", [np.dtype(">f4"), np.dtype("O"), np.dtype("c16"), np.dtype("U3")])
def test_dtypes_outside_the_allow_list_cannot_be_sent(dtype: np.dtype) -> None:
    with pytest.raises(ValueError, match="cannot be sent"):
        encode(Message("a/b", "frame", 0, {"x": np.zeros(2, dtype=dtype)}), seq=0, pt=0)


def test_unknown_kind_is_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match="not one of"):
        Message("a/b", "pickle", 0)


def _frames(**header_changes: object) -> list[bytes]:
    frames = [
        bytes(f)
        for f in encode(
            Message("a/b", "frame", 1, {"x": np.zeros((2, 2), np.float32)}), seq=0, pt=0
        )
    ]
    header = msgpack.unpackb(frames[1])
    header.update(header_changes)
    frames[1] = msgpack.packb(header)
    return frames


@pytest.mark.parametrize(
    ("frames", "cause"),
    [
        ([b"a/b"], "too-few-frames"),
        ([b"\xff\xfe", _frames()[1], _frames()[2]], "bad-topic"),
        ([b"a/b", b"\xc1garbage", b""], "bad-header"),
        ([b"a/b", msgpack.packb([1, 2, 3])], "bad-header"),
        (_frames(v=99), "bad-version"),
        (_frames(kind="pickle"), "bad-kind"),
        (_frames(seq=-1), "bad-header"),
        (_frames(t="soon"), "bad-header"),
        (_frames(meta=[1]), "bad-header"),
        (_frames(bufs=[["x", "O", [2]]]), "bad-dtype"),
        (_frames(bufs=[["x", "<f4", [2, -2]]]), "bad-shape"),
        (_frames(bufs=[["x", "<f4", [1] * 7]]), "bad-shape"),
        (_frames(bufs=[["x", "<f4", [3, 3]]]), "byte-count"),
        (_frames(bufs=[["x", "<f4", [2**20, 2**20]]]), "too-large"),
        (_frames(bufs=[]), "buffer-count"),
        (_frames(bufs=["x"]), "bad-buffer"),
        ([b"a/b", b"\x00" * (70 * 1024)], "header-too-large"),
    ],
)
def test_malformed_messages_raise_with_a_countable_cause(frames: list[bytes], cause: str) -> None:
    with pytest.raises(MessageError) as info:
        decode(frames)
    assert info.value.cause == cause, f"expected cause {cause!r}, got {info.value}"
