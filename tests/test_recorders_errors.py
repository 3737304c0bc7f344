"""Error messages name the file, the format, the byte offset and where inside a container."""

from __future__ import annotations

from respike.recorders import EventFileError, UnknownFormatError


def test_event_file_error_message() -> None:
    err = EventFileError("/data/a.raw", "evt3", "bad word", offset=1234)
    assert str(err) == "/data/a.raw: evt3 file cannot be read at byte 1234: bad word"
    err = EventFileError("/bag", "rosbag2", "odd", offset=8, where="message 3 on /ev")
    assert str(err) == "/bag: rosbag2 file cannot be read at byte 8 (message 3 on /ev): odd"
    assert isinstance(err, ValueError) and err.offset == 8 and err.where == "message 3 on /ev"


def test_unknown_format_error_points_to_the_list() -> None:
    err = UnknownFormatError("/x.bin", "no known header", ["a (.a): A", "b (.b): B"])
    assert str(err) == (
        "/x.bin: unknown event-file format: no known header; name one with --format "
        "(format= in Python), `respike info --help` lists them"
    )
    assert err.supported == ("a (.a): A", "b (.b): B") and isinstance(err, EventFileError)
