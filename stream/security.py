"""Endpoint policy and CURVE keys: loopback by default, encryption or an explicit opt-out otherwise.

A publisher may bind ``ipc://``, ``inproc://`` or a loopback ``tcp://`` address freely. Any
other address (a LAN interface, ``*``, ``0.0.0.0``) carries camera data off the machine, so it
needs CURVE keys (encryption plus client authentication) or ``insecure=True`` said out loud.

Keys live in one folder made by :func:`generate_keys` (``respike keys DIR``): the server pair
(kept by the publishing host), the client pair (given to subscribing hosts) and ``authorized/``,
the public keys of clients the server accepts. Copy the folder less ``server.key_secret`` to a
subscribing host.
"""

from __future__ import annotations

import ipaddress
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import zmq
import zmq.auth

if TYPE_CHECKING:  # imported when CURVE is used: it brings asyncio, a tenth of a node's start
    from zmq.auth.thread import ThreadAuthenticator

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class InsecureEndpointError(ValueError):
    """Binding or connecting off-host without CURVE keys and without ``insecure``."""


def is_local_endpoint(endpoint: str) -> bool:
    """True for ipc/inproc endpoints and tcp endpoints on a loopback address."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = urlsplit(f"//{rest}").hostname or ""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Security:
    """How a socket protects an endpoint: CURVE keys from ``keys_dir``, or ``insecure``."""

    keys_dir: Path | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        if self.keys_dir is not None and not (self.keys_dir / "server.key").is_file():
            raise FileNotFoundError(
                f"CURVE key folder {self.keys_dir} has no server.key; "
                "create one with `respike keys DIR`"
            )

    @property
    def curve(self) -> bool:
        return self.keys_dir is not None

    def check(self, endpoint: str) -> None:
        """Raise :class:`InsecureEndpointError` unless ``endpoint`` may be used as configured."""
        if self.curve or self.insecure or is_local_endpoint(endpoint):
            return
        raise InsecureEndpointError(
            f"endpoint {endpoint} is not on this host: give CURVE keys (--keys DIR, made by "
            "`respike keys DIR`) or pass --insecure to send unencrypted"
        )

    def apply_server(self, socket: zmq.Socket) -> None:
        """Make a binding socket a CURVE server with the folder's server secret key."""
        if self.keys_dir is None:
            return
        public, secret = zmq.auth.load_certificate(self.keys_dir / "server.key_secret")
        if secret is None:
            raise FileNotFoundError(f"{self.keys_dir / 'server.key_secret'} holds no secret key")
        socket.curve_secretkey = secret
        socket.curve_publickey = public
        socket.curve_server = True

    def apply_client(self, socket: zmq.Socket) -> None:
        """Make a connecting socket a CURVE client trusting the folder's server public key."""
        if self.keys_dir is None:
            return
        server_public, _ = zmq.auth.load_certificate(self.keys_dir / "server.key")
        public, secret = zmq.auth.load_certificate(self.keys_dir / "client.key_secret")
        if secret is None:
            raise FileNotFoundError(f"{self.keys_dir / 'client.key_secret'} holds no secret key")
        socket.curve_serverkey = server_public
        socket.curve_publickey = public
        socket.curve_secretkey = secret


_authenticators: dict[int, ThreadAuthenticator] = {}


def authorize_clients(context: zmq.Context, security: Security) -> None:
    """Accept CURVE clients only if their public key is in ``keys_dir/authorized`` (once per context)."""
    if security.keys_dir is None or id(context) in _authenticators:
        return
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=str(security.keys_dir / "authorized"))
    _authenticators[id(context)] = auth


def stop_authenticators() -> None:
    """Stop the authenticator threads (before a context is terminated)."""
    while _authenticators:
        _, auth = _authenticators.popitem()
        auth.stop()


KEY_FILES: tuple[str, ...] = (
    "server.key",
    "server.key_secret",
    "client.key",
    "client.key_secret",
    "authorized/client.key",
)
"""The files :func:`generate_keys` writes, relative to the key folder."""


def generate_keys(folder: Path, *, force: bool = False) -> Path:
    """Create a server and a client CURVE key pair in ``folder`` and authorize the client.

    Keys already there are kept and :class:`FileExistsError` names them unless ``force``:
    replacing them locks out every host that holds the old public keys.
    """
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} is a file; expected a CURVE key folder")
    existing = [name for name in KEY_FILES if (folder / name).exists()]
    if existing and not force:
        raise FileExistsError(
            f"{folder} already holds CURVE keys ({', '.join(existing)}); replacing them locks out "
            "every host holding the old public keys (`respike keys --force DIR` replaces them)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    for name in ("server", "client"):
        for suffix in (".key", ".key_secret"):
            (folder / f"{name}{suffix}").unlink(missing_ok=True)
        zmq.auth.create_certificates(folder, name)
    authorized = folder / "authorized"
    authorized.mkdir(exist_ok=True)
    shutil.copy(folder / "client.key", authorized / "client.key")
    return folder
