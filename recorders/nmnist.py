"""N-MNIST-style 40-bit binary (``.bin``, ``.bs2``: N-MNIST, N-Caltech101, DVS Gesture samples).

Each event is 5 bytes: x (8 bits), y (8 bits), polarity (1 bit), time (23 bits, µs), big-endian
within the record. Records with y == 240 are time-overflow markers that add 2**13 µs to every
later event (Orchard's reference reader, which ``tonic.io.read_mnist_file`` copies); a step back
from near 2**23 to near 0 is unwrapped too (see :func:`respike.recorders.kernels.decode_nmnist`).
The format stores no sensor size.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from respike.events import EVENT_DTYPE
from respike.events.types import EventArray
from respike.recorders.base import EventReader, Frame
from respike.recorders.kernels import decode_nmnist, nmnist_state, record_words

RECORD_BYTES = 5


class NMnistReader(EventReader):
    """Reads the 40-bit binary in blocks of ``packet_events`` records (numba kernel)."""

    format_name = "nmnist"

    def _items(self) -> Iterator[EventArray | Frame]:
        state = nmnist_state()
        pos = 0
        with self._path.open("rb") as f:
            while raw := f.read(self._options.packet_events * RECORD_BYTES):
                nrec = len(raw) // RECORD_BYTES
                data = np.frombuffer(raw, dtype=np.uint8, count=nrec * RECORD_BYTES)
                packet = np.empty(nrec, dtype=EVENT_DTYPE)
                n, bad = decode_nmnist(data, state, record_words(packet))
                yield packet[:n]
                if bad >= 0:
                    raise self._damaged(
                        "event time steps back (not a 23-bit wrap-around)",
                        offset=pos + bad * RECORD_BYTES,
                    )
                if len(raw) % RECORD_BYTES:
                    raise self._damaged(
                        f"file ends inside a {RECORD_BYTES}-byte event (truncated)",
                        offset=pos + nrec * RECORD_BYTES,
                    )
                pos += len(raw)
