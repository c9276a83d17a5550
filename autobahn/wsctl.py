#!/usr/bin/env python3
"""Tiny WebSocket control client for the Autobahn fuzzing server (stdlib only).

Used by run-client.sh to talk to `wstest -m fuzzingserver` without a real
client: check that it serves (getCaseCount) and ask it to write the reports
(updateReports). Not a general WebSocket client: it opens one connection,
prints every text message it receives (one per line), answers the server's
close frame and exits 0. Exits non-zero on any error.

Usage: wsctl.py ws://127.0.0.1:9001/getCaseCount
       wsctl.py 'ws://127.0.0.1:9001/updateReports?agent=wsecho-client'
"""
import base64
import hashlib
import os
import socket
import struct
import sys
import urllib.parse

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by server mid-frame")
        buf += chunk
    return buf


def send_frame(sock, opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(header + mask + masked)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    url = urllib.parse.urlsplit(sys.argv[1])
    if url.scheme != "ws" or not url.hostname or not url.port:
        sys.exit("wsctl.py: need a ws://HOST:PORT/... URL, got %r" % sys.argv[1])
    target = (url.path or "/") + ("?" + url.query if url.query else "")

    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n" % (target, url.hostname, url.port, key)
    )
    sock.sendall(request.encode())

    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            sys.exit("wsctl.py: connection closed during the opening handshake")
        response += chunk
    head, rest = response.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 101"):
        sys.exit("wsctl.py: handshake refused: %s" % lines[0])
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    if headers.get("sec-websocket-accept") != accept:
        sys.exit("wsctl.py: bad Sec-WebSocket-Accept")

    # Push back bytes that arrived with the handshake response.
    pending = [rest]

    def read(n):
        if pending[0]:
            take, pending[0] = pending[0][:n], pending[0][n:]
            return take + (recv_exact(sock, n - len(take)) if len(take) < n else b"")
        return recv_exact(sock, n)

    message = b""
    while True:
        b0, b1 = read(2)
        opcode, n = b0 & 0x0F, b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", read(8))
        mask = read(4) if b1 & 0x80 else None
        payload = read(n)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if opcode in (0x0, 0x1, 0x2):
            message += payload
            if b0 & 0x80:
                print(message.decode("utf-8", "replace"), flush=True)
                message = b""
        elif opcode == 0x9:  # ping
            send_frame(sock, 0xA, payload)
        elif opcode == 0x8:  # close: echo the status code and finish
            send_frame(sock, 0x8, payload[:2])
            sock.close()
            return


if __name__ == "__main__":
    try:
        main()
    except (OSError, ConnectionError) as e:
        sys.exit("wsctl.py: %s" % e)
