"""The offline machines' apt proxy: GET and HEAD to the Debian mirror's hosts only.

    python3 -m k8slab.machines.proxy --listen 10.0.2.1:3142 --allow deb.debian.org

Offline machines have no way out but this. Plain http (port 80) to a host in --allow (the
mirror's) is forwarded; everything else - other hosts, other ports, https, CONNECT, POST, ... -
gets 403. Stdlib only; started detached by k8slab.machines.network.
"""

import argparse
import http.client
import socketserver
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
ALLOWED: set = set()
CHUNK = 64 * 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "k8s-lab-machines-proxy"

    def setup(self):
        super().setup()
        self.upstreams = {}

    def finish(self):
        for c in self.upstreams.values():
            c.close()
        super().finish()

    def __getattr__(self, name):
        # every method without a do_ handler of its own (CONNECT, POST, PUT, ...) is refused
        if name.startswith("do_"):
            return self.deny
        raise AttributeError(name)

    def deny(self, why=None):
        why = why or f"method {self.command} not allowed"
        body = f"403 refused by the k8s-lab machines' proxy: {why}\n".encode()
        self.send_response(403)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        self.forward()

    def do_HEAD(self):
        self.forward()

    def forward(self):
        url = urlsplit(self.path)
        host = (url.hostname or "").lower()
        if url.scheme != "http" or not host:
            return self.deny(f"not an absolute http:// URL: {self.path[:200]}")
        if host not in ALLOWED:
            return self.deny(f"host {host} is not the machines' Debian mirror")
        if url.port not in (None, 80):
            return self.deny(f"port {url.port} not allowed")
        target = url.path or "/"
        if url.query:
            target += "?" + url.query
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = host
        for attempt in (1, 2):
            conn = self.upstreams.get(host)
            if conn is None:
                conn = self.upstreams[host] = http.client.HTTPConnection(host, 80, timeout=60)
            try:
                conn.request(self.command, target, headers=headers)
                resp = conn.getresponse()
                break
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                self.upstreams.pop(host, None)
                if attempt == 2:
                    self.send_error(502, f"upstream {host}: {e}")
                    return
        length = resp.getheader("Content-Length")
        body = None
        if self.command != "HEAD" and length is None and resp.status not in (204, 304):
            body = resp.read()  # chunked or until-close upstream: buffer, send with a length
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() in HOP_BY_HOP or (body is not None and k.lower() == "content-length"):
                continue
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            resp.read()
        elif body is not None:
            self.wfile.write(body)
        else:
            while True:
                data = resp.read(CHUNK)
                if not data:
                    break
                self.wfile.write(data)
        if resp.will_close:
            conn.close()
            self.upstreams.pop(host, None)

    def log_message(self, fmt, *args):
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} {self.client_address[0]} {fmt % args}\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self):
        # HTTPServer's own looks its address up in DNS (getfqdn): on an offline host that
        # waits for resolver timeouts before the proxy listens. The name is never used.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True, help="ADDRESS:PORT")
    ap.add_argument("--allow", required=True, help="comma-separated host names")
    a = ap.parse_args()
    ALLOWED.update(h.strip().lower() for h in a.allow.split(",") if h.strip())
    addr, port = a.listen.rsplit(":", 1)
    srv = Server((addr, int(port)), Handler)
    sys.stderr.write(f"listening on {a.listen}, allowing GET/HEAD to {sorted(ALLOWED)}\n")
    sys.stderr.flush()
    srv.serve_forever()


if __name__ == "__main__":
    main()
