"""CURVE: an encrypted endpoint gives nothing to a client without the right keys."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import zmq

from respike.stream.messages import Message
from respike.stream.security import Security, generate_keys, is_local_endpoint, stop_authenticators
from respike.stream.sockets import Delivery, Publisher, Subscriber


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [
        ("ipc:///tmp/x.sock", True),
        ("inproc://x", True),
        ("tcp://127.0.0.1:5555", True),
        ("tcp://127.8.0.3:5555", True),
        ("tcp://localhost:5555", True),
        ("tcp://[::1]:5555", True),
        ("tcp://0.0.0.0:5555", False),
        ("tcp://*:5555", False),
        ("tcp://192.168.1.4:5555", False),
        ("tcp://robot.local:5555", False),
    ],
)
def test_only_loopback_and_local_transports_count_as_local(endpoint: str, local: bool) -> None:
    assert is_local_endpoint(endpoint) is local


def test_curve_endpoint_serves_only_clients_with_the_right_keys(tmp_path: Path) -> None:
    keys = generate_keys(tmp_path / "keys")
    stranger = generate_keys(tmp_path / "stranger")  # valid keys, but not authorized here
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    context = zmq.Context()
    secure = Security(keys_dir=keys)
    publisher = Publisher(
        endpoint, source="cam", security=secure, context=context, delivery=Delivery.LOSSLESS
    )
    trusted = Subscriber(endpoint, "cam/frames", security=secure, context=context)
    plain = Subscriber(endpoint, "cam/frames", context=context)
    wrong = Subscriber(
        endpoint, "cam/frames", security=Security(keys_dir=stranger), context=context
    )
    try:
        assert publisher.wait_for_subscribers("cam/frames", 1, timeout=10), (
            "the trusted client never connected"
        )
        for i in range(20):
            publisher.send(Message("cam/frames", "frame", i, meta={"secret": "payload"}))
        got = []
        while len(got) < 1:
            batch = trusted.receive(timeout=5.0)
            assert batch, "the trusted client received nothing"
            got += batch
        assert got[0].meta["secret"] == "payload"
        assert plain.receive(timeout=1.0) == [], "an unencrypted client must get nothing"
        assert wrong.receive(timeout=0.5) == [], (
            "a client whose key is not authorized must get nothing"
        )
        assert publisher.subscribers("cam/frames") == 1, "only the trusted client may subscribe"
    finally:
        for sock in (trusted, plain, wrong, publisher):
            sock.close()
        stop_authenticators()
        context.term()


def test_keys_folder_must_hold_a_server_key(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="respike keys"):
        Security(keys_dir=tmp_path)


def test_generate_keys_keeps_existing_keys_unless_forced(tmp_path: Path) -> None:
    folder = generate_keys(tmp_path / "keys")
    server_key = (folder / "server.key").read_bytes()
    with pytest.raises(FileExistsError) as info:
        generate_keys(folder)
    message = str(info.value)
    assert str(folder) in message and "server.key" in message and "authorized/client.key" in message
    assert (folder / "server.key").read_bytes() == server_key, "refused, yet the key changed"
    generate_keys(folder, force=True)
    assert (folder / "server.key").read_bytes() != server_key, "force must make new keys"


def test_generate_keys_into_an_empty_or_partial_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert (generate_keys(tmp_path / "empty") / "server.key").is_file(), "an empty folder is fine"
    partial = tmp_path / "partial"
    (partial / "authorized").mkdir(parents=True)
    (partial / "authorized" / "client.key").write_text("a client some host trusts")
    with pytest.raises(FileExistsError, match=r"authorized/client\.key"):
        generate_keys(partial)
