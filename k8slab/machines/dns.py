"""The machines' resolver: a DNS forwarder on the bridge's address that passes each query to
this host's own resolver and the answer back, so names resolve in the machines as they do on
the host (a systemd-resolved stub or a local dnsmasq on 127.0.0.x included, which the machines
could not reach themselves). UDP and TCP; stdlib only; started detached by ``network``.

    python3 -m k8slab.machines.dns --listen 10.0.2.1 --upstream 192.0.2.53
"""

from __future__ import annotations

import argparse
import socket
import socketserver
import struct
import sys
import threading
from pathlib import Path

TIMEOUT = 5.0


def host_resolvers(resolv_conf: str = "/etc/resolv.conf") -> list[str]:
    try:
        text = Path(resolv_conf).read_text()
    except OSError:
        return []
    return [
        line.split()[1]
        for line in text.splitlines()
        if line.startswith("nameserver") and len(line.split()) > 1
    ]


def ask_udp(query: bytes, upstreams: list[str]) -> bytes | None:
    for server in upstreams:
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(TIMEOUT)
            try:
                s.sendto(query, (server, 53))
                return s.recvfrom(65535)[0]
            except OSError:
                continue
    return None


def ask_tcp(query: bytes, upstreams: list[str]) -> bytes | None:
    for server in upstreams:
        try:
            with socket.create_connection((server, 53), timeout=TIMEOUT) as s:
                s.sendall(struct.pack("!H", len(query)) + query)
                size = struct.unpack("!H", _exactly(s, 2))[0]
                return _exactly(s, size)
        except (OSError, struct.error):
            continue
    return None


def _exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise OSError("short read")
        data += chunk
    return data


def serve(listen: str, upstreams: list[str]) -> None:
    class Udp(socketserver.BaseRequestHandler):
        def handle(self):
            query, sock = self.request
            answer = ask_udp(query, upstreams)
            if answer:
                sock.sendto(answer, self.client_address)

    class Tcp(socketserver.BaseRequestHandler):
        def handle(self):
            try:
                size = struct.unpack("!H", _exactly(self.request, 2))[0]
                answer = ask_tcp(_exactly(self.request, size), upstreams)
            except (OSError, struct.error):
                return
            if answer:
                self.request.sendall(struct.pack("!H", len(answer)) + answer)

    socketserver.ThreadingUDPServer.daemon_threads = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    udp = socketserver.ThreadingUDPServer((listen, 53), Udp)
    tcp = socketserver.ThreadingTCPServer((listen, 53), Tcp)
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    print(f"forwarding DNS on {listen}:53 to {', '.join(upstreams)}", file=sys.stderr, flush=True)
    udp.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--upstream", action="append", default=[])
    a = ap.parse_args()
    upstreams = a.upstream or host_resolvers()
    if not upstreams:
        sys.exit("no resolver: /etc/resolv.conf names no nameserver; pass --upstream")
    serve(a.listen, upstreams)


if __name__ == "__main__":
    main()
