"""ROS 2 messages on the DDS wire: our CDR bytes equal rosbags' for each message respike
speaks, decode back, and refuse damaged samples with the reason."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cyclonedds")

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from respike.recorders.rosbag import PACKET_MSG
from respike.stream.ros2 import (
    PREDICTION_MSG,
    CdrError,
    EventPacket,
    Header,
    Image,
    Prediction,
    String,
    Time,
    dds_topic,
    qos,
)


@pytest.fixture(scope="module")
def typestore():  # type: ignore[no-untyped-def]
    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(get_types_from_msg(PACKET_MSG, "event_camera_msgs/msg/EventPacket"))
    store.register(get_types_from_msg(PREDICTION_MSG, "respike_msgs/msg/Prediction"))
    return store


def rosbags_cdr(store, name: str, *fields) -> bytes:  # type: ignore[no-untyped-def]
    def build(type_name: str, values):  # type: ignore[no-untyped-def]
        return store.types[type_name](*values)

    time = build("builtin_interfaces/msg/Time", fields[0][:2])
    header = build("std_msgs/msg/Header", (time, fields[0][2]))
    return bytes(store.serialize_cdr(build(name, (header, *fields[1:])), name))


def test_image_bytes_equal_rosbags_and_decode_back(typestore) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    for height, width, frame_id in ((3, 4, "cam"), (480, 640, ""), (1, 1, "a_longer_frame")):
        data = rng.integers(0, 255, height * width * 3, dtype=np.uint8)
        ours = Image(Header(Time(12, 345), frame_id), height, width, "rgb8", 0, width * 3, data)
        expected = rosbags_cdr(
            typestore,
            "sensor_msgs/msg/Image",
            (12, 345, frame_id),
            height,
            width,
            "rgb8",
            0,
            width * 3,
            data,
        )
        assert ours.serialize() == expected
        assert (
            Image(
                Header(Time(12, 345), frame_id), height, width, "rgb8", 0, width * 3, data.tobytes()
            ).serialize()
            == expected
        ), "bytes as well as arrays"
        back = Image.deserialize(expected)
        assert (back.height, back.width, back.encoding, back.step) == (
            height,
            width,
            "rgb8",
            width * 3,
        )
        assert back.header == Header(Time(12, 345), frame_id)
        np.testing.assert_array_equal(back.data, data)


def test_event_packet_and_string_bytes_equal_rosbags(typestore) -> None:  # type: ignore[no-untyped-def]
    for size in (0, 1, 17, 4096):
        events = np.arange(size, dtype=np.uint8)
        ours = EventPacket(
            Header(Time(1, 2), "dvs"), 480, 640, 7, 123_456_789, "evt3", False, events
        )
        expected = rosbags_cdr(
            typestore,
            "event_camera_msgs/msg/EventPacket",
            (1, 2, "dvs"),
            480,
            640,
            7,
            123_456_789,
            "evt3",
            False,
            events,
        )
        assert ours.serialize() == expected
        back = EventPacket.deserialize(expected)
        assert (back.seq, back.time_base, back.encoding) == (7, 123_456_789, "evt3")
        np.testing.assert_array_equal(back.events, events)
    text = '{"label": "wave", "score": 0.9, "ü": 1}'
    expected = bytes(
        typestore.serialize_cdr(typestore.types["std_msgs/msg/String"](text), "std_msgs/msg/String")
    )
    assert String(text).serialize() == expected
    assert String.deserialize(expected).data == text


@pytest.mark.parametrize(
    "fields",
    [
        (
            "wave",
            "clap",
            True,
            ["wave", "clap", "no action"],
            [0.5, 0.25, 0.125],
            ["e2e"],
            [9.5],
            4.5,
        ),
        ("", "", False, [], [], [], [], float("nan")),
        ("a", "a", False, ["a"], [1.0], ["snn", "e2e"], [1.25, 20.0], 0.0),
    ],
)
def test_typed_prediction_bytes_equal_rosbags_and_the_dds_binding(typestore, fields) -> None:  # type: ignore[no-untyped-def]
    """``respike_msgs/msg/Prediction`` as its .msg text defines it: rosbags (from that text)
    and Cyclone DDS's own serialiser (from the IDL class a DDS peer matches on) agree."""
    from cyclonedds.idl import IdlStruct

    label, raw, changed, classes, scores, stages, latency, energy = fields
    floats = [np.array(scores, np.float32), np.array(latency, np.float32)]
    values = (label, raw, changed, classes, floats[0], stages, floats[1], energy)
    expected = rosbags_cdr(typestore, "respike_msgs/msg/Prediction", (3, 4, "cam"), *values)
    ours = Prediction(Header(Time(3, 4), "cam"), *fields)
    assert ours.serialize() == expected
    assert IdlStruct.serialize(ours, use_version_2=False) == expected
    back = Prediction.deserialize(expected)
    assert (back.label, back.classes, back.scores, back.latency_stages) == (
        label,
        classes,
        scores,
        stages,
    )
    assert back.energy_uj == energy or (np.isnan(back.energy_uj) and np.isnan(energy))


def test_damaged_samples_say_what_is_wrong() -> None:
    good = Image(Header(), 2, 2, "mono8", 0, 2, np.zeros(4, np.uint8)).serialize()
    with pytest.raises(CdrError, match="ends at byte 40, inside a field"):
        Image.deserialize(good[:40])
    with pytest.raises(CdrError, match="expected CDR little endian"):
        Image.deserialize(b"\x00\x07\x00\x00" + good[4:])
    with pytest.raises(CdrError, match="XCDR1, not XCDR2"):
        Image().serialize(use_version_2=True)


def test_ros_naming_time_and_qos() -> None:
    assert dds_topic("/camera/image_raw") == "rt/camera/image_raw"
    assert Time.from_us(1_796_361_892_034_531) == Time(1_796_361_892, 34_531_000)
    assert Time.from_us(1_796_361_892_034_531).to_us() == 1_796_361_892_034_531
    assert qos("sensor_data") != qos("default")
    with pytest.raises(ValueError, match="expected sensor_data or default"):
        qos("fast")
