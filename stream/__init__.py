"""The transport: message schema and codec, publisher/subscriber sockets, same-host shared
memory for their arrays, endpoint security.

Light on purpose (numpy, pyzmq, msgpack; never torch): a camera node must start fast.
"""

from respike.stream.messages import KINDS, Message, MessageError, decode, encode, now_us
from respike.stream.security import Security
from respike.stream.sockets import Delivery, InputHealth, Publisher, Stopped, Subscriber

__all__ = [
    "KINDS",
    "Delivery",
    "InputHealth",
    "Message",
    "MessageError",
    "Publisher",
    "Security",
    "Stopped",
    "Subscriber",
    "decode",
    "encode",
    "now_us",
]
