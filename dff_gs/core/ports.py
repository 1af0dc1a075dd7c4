"""Whether a TCP port can be listened on now, for the viewers (checked before any work)."""

from __future__ import annotations

import errno
import socket

from dff_gs.core.errors import ConfigError, quote


def check_port(host: str, port: int, what: str = "--port ", host_what: str = "--host ") -> None:
    """A ``ConfigError`` unless ``host:port`` can be listened on now (viser would silently move to another port),
    naming what is wrong: the port (``what``: not a port, in use, privileged) or the host (``host_what``: a name
    that does not resolve, an address that is not this machine's)."""
    if not 0 < port < 65536:
        raise ConfigError(f"{what}{port}: not a TCP port (1..65535)")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except (socket.gaierror, UnicodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ConfigError(f"{host_what}{quote(host)}: not an address this machine can resolve ({reason}); use "
                          "127.0.0.1, 0.0.0.0 (every interface) or one of its own names") from None
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed server's TIME_WAIT is no obstacle
        try:
            s.bind((host, port))
        except OSError as err:
            raise ConfigError(_bind_problem(err, host, port, what, host_what)) from None


def _bind_problem(err: OSError, host: str, port: int, what: str, host_what: str) -> str:
    """Why ``bind(host, port)`` failed, naming the one at fault: the host or the port."""
    if err.errno == errno.EADDRNOTAVAIL:
        return (f"{host_what}{quote(host)}: not an address of this machine ({err.strerror}); use 127.0.0.1, "
                "0.0.0.0 (every interface) or one of its own addresses")
    if err.errno == errno.EADDRINUSE:
        return f"{what}{port} on {host}: in use ({err.strerror}); choose another port"
    if err.errno == errno.EACCES and port < 1024:
        return f"{what}{port} on {host}: ports below 1024 need privileges ({err.strerror}); choose one from 1024"
    return f"{what}{port} on {host}: cannot listen there ({err.strerror})"
