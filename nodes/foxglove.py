"""`foxglove`: a running pipeline, live in Foxglove, with the schemas Foxglove shows natively.

Frames, residuals and event packets become images, ``foxglove.CompressedImage`` (JPEG) or
``foxglove.RawImage`` (rgb8), drawn as the viewer draws them; predictions become JSON with a
JSON schema (Raw Messages, Plot and State Transitions panels read its fields). Each upstream
topic ``NODE/PORT`` is the Foxglove topic ``/NODE/PORT``. The ``recorder`` writes the same views
into its MCAP files (:func:`view_schema`, :func:`view_bytes`), so a layout made on a live
pipeline opens its recordings too.

The server is the ``foxglove-sdk`` one (WebSocket, ``foxglove.sdk.v1``). A message is drawn and
encoded only when a client subscribes to its topic. A client that leaves mid-stream is counted
and logged once with the node's name; the node keeps serving the others.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from respike.nodes.base import Node, param, register
from respike.nodes.viewer.images import IMAGE_KINDS, draw, encode_jpeg
from respike.stream import kinds
from respike.stream.messages import Message

if TYPE_CHECKING:
    from foxglove.websocket import ServerListener

log = logging.getLogger(__name__)

IMAGE_FORMATS = ("jpeg", "raw")


def foxglove_topic(topic: str) -> str:
    """The Foxglove topic of a respike topic (``camera/frames`` → ``/camera/frames``)."""
    return "/" + topic.lstrip("/")


def view_schema(kind: str, image_format: str = "jpeg") -> tuple[Any, str] | None:
    """The Foxglove schema and message encoding of a message kind's view; None for a kind
    that has none (features, stats, ...)."""
    import foxglove
    from foxglove.messages import CompressedImage, RawImage

    if kind in IMAGE_KINDS:
        image = CompressedImage if image_format == "jpeg" else RawImage
        return image.get_schema(), "protobuf"
    if kind == kinds.Prediction.KIND:
        schema = json.dumps(kinds.PREDICTION_RECORD_SCHEMA).encode()
        return foxglove.Schema(
            name="respike.Prediction", encoding="jsonschema", data=schema
        ), "json"
    return None


def view_image(message: Message) -> np.ndarray:
    """The RGB image of a frame, residual or event packet, drawn by the viewer's
    :func:`~respike.nodes.viewer.images.draw` (each kind's array has the kind's name)."""
    data: Any = _array(message, message.kind)
    if message.kind != kinds.Events.KIND:
        return draw(message.kind, data, {}, 0.0)
    meta = kinds.Events.read(message)
    if meta.width <= 0 or meta.height <= 0:
        raise ValueError(f"an event packet of sensor size {meta.width}x{meta.height}")
    return draw(message.kind, [data], {"width": meta.width, "height": meta.height}, 0.0)


def view_bytes(
    message: Message, image_format: str = "jpeg", jpeg_quality: int = 80, frame_id: str = ""
) -> bytes:
    """The encoded Foxglove view of ``message`` (see :func:`view_schema`); ValueError says what
    cannot be drawn."""
    if message.kind == kinds.Prediction.KIND:
        return json.dumps(kinds.prediction_record(message)).encode()
    from foxglove.messages import CompressedImage, RawImage, Timestamp

    rgb = view_image(message)
    stamp = Timestamp(message.t // 1_000_000, message.t % 1_000_000 * 1000)
    if image_format == "jpeg":
        data = encode_jpeg(rgb, jpeg_quality)
        return CompressedImage(
            timestamp=stamp, frame_id=frame_id, data=data, format="jpeg"
        ).encode()
    height, width = rgb.shape[:2]
    return RawImage(
        timestamp=stamp,
        frame_id=frame_id,
        width=width,
        height=height,
        encoding="rgb8",
        step=width * 3,
        data=rgb.tobytes(),
    ).encode()


def _array(message: Message, name: str) -> np.ndarray:
    array = message.arrays.get(name)
    if array is None:
        raise ValueError(f"a {message.kind} message without its {name!r} array")
    return array


class _Clients:
    """Foxglove's server listener: subscriptions now, and clients that left mid-stream."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.subscriptions: set[tuple[int, int]] = set()
        self.left = 0

    def on_subscribe(self, client: Any, channel: Any) -> None:
        self.subscriptions.add((client.id, channel.id))

    def on_unsubscribe(self, client: Any, channel: Any) -> None:
        self.subscriptions.discard((client.id, channel.id))
        if not any(c == client.id for c, _ in self.subscriptions):
            if not self.left:
                log.warning(
                    "%s: a Foxglove client left mid-stream; serving the others (further "
                    "ones are counted)",
                    self.node,
                )
            self.left += 1


@dataclass(frozen=True)
class FoxgloveParams:
    host: str = param("127.0.0.1", "address to serve on (0.0.0.0: every interface)")
    port: int = param(8765, "WebSocket port (Foxglove's default); 0 = any free port")
    images: str = param("jpeg", "jpeg (foxglove.CompressedImage) or raw (foxglove.RawImage rgb8)")
    jpeg_quality: int = param(80, "JPEG quality of images, 1-100")
    frame_id: str = param("camera", "frame_id of images")

    def __post_init__(self) -> None:
        if self.images not in IMAGE_FORMATS:
            raise ValueError(f"images {self.images!r}; expected jpeg or raw")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality {self.jpeg_quality}; expected 1-100")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port}; expected 0-65535")


@register("foxglove")
class FoxgloveNode(Node[FoxgloveParams]):
    """Serves its inputs to Foxglove over WebSocket: images and predictions, live."""

    Params = FoxgloveParams
    any_inputs = True

    def start(self) -> None:
        import foxglove

        self._context = foxglove.Context()
        self._clients = _Clients(self.name)
        try:
            self._server = foxglove.start_server(
                name=f"respike {self.name}",
                host=self.params.host,
                port=self.params.port,
                context=self._context,
                server_listener=cast("ServerListener", self._clients),
            )
        except RuntimeError as exc:  # FoxgloveError: "Failed to bind port: ..."
            raise OSError(
                f"Foxglove cannot serve on {self.params.host}:{self.params.port}: "
                f"{str(exc).removeprefix('FoxgloveError: ')}; pick another port, or port = 0 "
                "for any free one"
            ) from exc
        self.port = self._server.port
        log.info("%s: Foxglove WebSocket on ws://%s:%d", self.name, self.params.host, self.port)
        self._channels: dict[str, Any] = {}
        self._invalid: Counter[str] = Counter()
        self.sent = 0
        self.unwatched = 0

    def _channel(self, message: Message) -> Any:
        """The Foxglove channel of ``message``'s topic (made at its first message); None for a
        kind Foxglove is not shown."""
        if message.topic not in self._channels:
            import foxglove

            view = view_schema(message.kind, self.params.images)
            self._channels[message.topic] = None
            if view is not None:
                self._channels[message.topic] = foxglove.Channel(
                    foxglove_topic(message.topic),
                    schema=view[0],
                    message_encoding=view[1],
                    context=self._context,
                )
        return self._channels[message.topic]

    def on_message(self, port: str, message: Message) -> None:
        channel = self._channel(message)
        if channel is None:
            return
        if not channel.has_sinks():
            self.unwatched += 1
            return
        try:
            data = view_bytes(
                message, self.params.images, self.params.jpeg_quality, self.params.frame_id
            )
        except ValueError as error:
            if not self._invalid[message.kind]:
                log.warning(
                    "%s: %s on %s: %s (further ones are counted)",
                    self.name,
                    message.kind,
                    port,
                    error,
                )
            self._invalid[message.kind] += 1
            return
        channel.log(data, log_time=message.t * 1000)
        self.sent += 1

    def stats(self) -> dict[str, float]:
        return {
            "sent": float(self.sent),
            "unwatched": float(self.unwatched),
            "subscriptions": float(len(self._clients.subscriptions)),
            "clients_left": float(self._clients.left),
            "invalid": float(sum(self._invalid.values())),
        }

    def finish(self) -> None:
        self._server.stop()


__all__ = ["FoxgloveNode", "foxglove_topic", "view_bytes", "view_image", "view_schema"]
