#!/usr/bin/env python3
"""Regenerate the committed seed corpora under fuzz/seeds/<target>/.

Each seed follows its target's input layout (see the doc comment at the top of
fuzz_targets/<target>.rs). Run from anywhere: python3 fuzz/seeds/make_seeds.py
"""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes(data))


def frame(op, payload, fin=True, key=b"\x37\xfa\x21\x3d", rsv=0):
    """A client frame: masked with `key` (None for an unmasked frame)."""
    b0 = (0x80 if fin else 0) | rsv | op
    n = len(payload)
    mbit = 0x80 if key is not None else 0
    if n <= 125:
        h = bytes([b0, mbit | n])
    elif n <= 0xFFFF:
        h = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if key is None:
        return h + payload
    return h + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


GOOD = (
    b"GET /echo HTTP/1.1\r\nHost: localhost:8080\r\nUpgrade: websocket\r\n"
    b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)

# handshake: [chunk seed, config] + request bytes
write("handshake", "upgrade_valid", b"\x01\x00" + GOOD)
write("handshake", "upgrade_valid_bytewise", b"\x00\x00" + GOOD)
write(
    "handshake",
    "upgrade_deflate_protocol_origin",
    b"\x02\x02"
    + GOOD.replace(
        b"\r\n\r\n",
        b"\r\nOrigin: http://localhost:8080\r\nSec-WebSocket-Protocol: superchat, chat\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-foo\r\n\r\n",
    ),
)
write("handshake", "upgrade_early_data", b"\x03\x00" + GOOD + frame(1, b"hi"))
write("handshake", "home_page", b"\x02\x00GET / HTTP/1.1\r\nHost: x\r\n\r\n")
write("handshake", "bad_key_post", b"\x01\x00" + GOOD.replace(b"GET", b"POST").replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"c2hvcnQ="))
write("handshake", "small_limits_431", b"\x01\x09" + GOOD)
write("handshake", "split_terminator", b"\x00\x00GET / HTTP/1.1\r\n\r\r\n\r\n")
# HTTP rules beyond gorilla's checks (RFC 9112 §3.2, RFC 6455 §4.1 and §11.3).
HOME = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def with_header(line):
    return GOOD.replace(b"\r\n\r\n", b"\r\n" + line + b"\r\n\r\n")


write("handshake", "no_host_upgrade", b"\x02\x00" + GOOD.replace(b"Host: localhost:8080\r\n", b""))
write("handshake", "no_host_http10_home", b"\x02\x00GET / HTTP/1.0\r\n\r\n")
write("handshake", "two_hosts", b"\x02\x00" + with_header(b"Host: evil.example"))
write("handshake", "malformed_host", b"\x02\x00" + GOOD.replace(b"Host: localhost:8080", b"Host: local host"))
write("handshake", "http10_upgrade", b"\x02\x00" + GOOD.replace(b"HTTP/1.1", b"HTTP/1.0"))
write("handshake", "repeated_key", b"\x01\x00" + with_header(b"Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw=="))
write("handshake", "repeated_version", b"\x01\x00" + with_header(b"sec-websocket-version: 13"))
write("handshake", "repeated_origin", b"\x01\x02" + with_header(b"Origin: http://localhost:8080\r\nOrigin: http://evil.example"))
write("handshake", "upgrade_with_body", b"\x02\x00" + with_header(b"Content-Length: 4") + b"\x81\x80ab")
write("handshake", "upgrade_chunked_body", b"\x02\x00" + with_header(b"Transfer-Encoding: chunked") + b"0\r\n\r\n")
write("handshake", "absolute_form_upgrade", b"\x02\x00" + GOOD.replace(b"GET /echo", b"GET http://localhost:8080/echo?x=1"))
write(
    "handshake",
    "absolute_form_origin_uses_target_host",
    b"\x01\x00"
    + GOOD.replace(b"GET /echo", b"GET ws://localhost:8080/echo").replace(
        b"Host: localhost:8080", b"Host: other.example\r\nOrigin: http://localhost:8080"
    ),
)
write("handshake", "absolute_form_home", b"\x02\x00GET http://localhost:8080 HTTP/1.1\r\nHost: localhost:8080\r\n\r\n")
write("handshake", "absolute_form_userinfo", b"\x02\x00" + GOOD.replace(b"GET /echo", b"GET http://u@localhost/echo"))
write("handshake", "pipelined_home", b"\x03\x00" + HOME + HOME)
write("handshake", "not_found_then_frame", b"\x03\x00" + GOOD.replace(b"/echo", b"/nope") + frame(1, b"hi"))
write("handshake", "bare_lf_head_inside_crlf_head", b"\x01\x00GET / HTTP/1.1\nHost: x\n\n" + GOOD)
write(
    "handshake",
    "deflate_offer_compression_off",
    b"\x02\x80" + with_header(b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"),
)

# frames_chunked: [chunk seed, config] + client stream
ping_inside = (
    frame(1, "héllo ".encode(), fin=False)
    + frame(9, b"p")
    + frame(0, "世".encode(), fin=False)
    + frame(0, "界 🚀".encode())
    + frame(2, bytes([0, 1, 2, 255]))
    + frame(2, bytes([7]) * 300)
    + frame(10, b"")
    + frame(8, b"\x03\xe8bye")
)
write("frames_chunked", "fragmented_text_with_ping", b"\x01\x00" + ping_inside)
write("frames_chunked", "same_bytewise", b"\x00\x00" + ping_inside)
write("frames_chunked", "close_1000_reason", b"\x02\x00" + frame(8, b"\x03\xe8normal"))
write("frames_chunked", "close_empty", b"\x02\x00" + frame(8, b""))
write("frames_chunked", "close_1005_invalid", b"\x02\x00" + frame(8, b"\x03\xed"))
write("frames_chunked", "close_one_byte", b"\x02\x00" + frame(8, b"\x03"))
write("frames_chunked", "text_bad_utf8_split_codepoint", b"\x05\x00" + frame(1, b"x\xe2\x82", fin=False) + frame(0, b"\x28"))
write("frames_chunked", "text_truncated_bad_prefix", b"\x00\x00" + frame(1, b"a\xf4\x90\x80\x80bcdefghijklmnop")[:9])
write("frames_chunked", "unmasked_frame", b"\x01\x00" + frame(1, b"x", key=None))
write("frames_chunked", "len16_and_len64", b"\x06\x00" + frame(2, b"a" * 200) + frame(2, b"b" * 70000)[:40])
write("frames_chunked", "small_limits_too_many_fragments", b"\x02\x01" + b"".join(
    [frame(2, b"ab", fin=False)] + [frame(0, b"cd", fin=False)] * 4))
write("frames_chunked", "rsv1_allowed", b"\x03\x02" + frame(1, b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv=0x40) + frame(9, b""))
write("frames_chunked", "reserved_opcode_and_rsv", b"\x01\x00" + frame(3, b"") + frame(1, b"", rsv=0x20))
write("frames_chunked", "continuation_without_start", b"\x01\x00" + frame(0, b"zz"))

# utf8_vs_std: [chunk seed] + bytes
write("utf8_vs_std", "mixed_valid", b"\x00" + "héllo 世界 🚀 κόσμε".encode())
write("utf8_vs_std", "surrogate", b"\x01" + bytes([0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xED, 0xA0, 0x80]))
write("utf8_vs_std", "above_max", b"\x00" + bytes([0x61, 0xF4, 0x90, 0x80, 0x80]))
write("utf8_vs_std", "overlong", b"\x02" + bytes([0xC0, 0xAF, 0xE0, 0x80, 0xAF]))
write("utf8_vs_std", "truncated", b"\x00" + "ok€".encode()[:-1])
write("utf8_vs_std", "long_ascii_then_4byte", b"\x03" + b"a" * 70 + "🚀".encode() * 3)

# mask_vs_ref: key(4) phase offset seed + payload
write("mask_vs_ref", "rfc_hello", bytes([0x37, 0xFA, 0x21, 0x3D, 0, 0, 0]) + bytes([0x7F, 0x9F, 0x4D, 0x51, 0x58]))
write("mask_vs_ref", "odd_phase_offset", bytes([1, 2, 3, 250, 3, 5, 1]) + bytes(range(100)))
write("mask_vs_ref", "long_pieces", bytes([0xFF, 0, 0xFF, 0, 2, 15, 0xFE]) + bytes(range(256)) * 3)

# deflate_inflate: [chunk seed, config] + plain text (valid mode) or compressed bytes
def raw_deflate(data, level=6):
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


text = "héllo wörld ".encode() * 20
write("deflate_inflate", "valid_text_nct", bytes([0x01, 0x02 | 0x04 | 0x01 | (7 << 3)]) + text)
write("deflate_inflate", "valid_binary_takeover_w8", bytes([0x02, 0x04 | (7 << 3) | 0x40]) + bytes(range(256)))
write("deflate_inflate", "valid_text_bad_utf8", bytes([0x01, 0x02 | 0x04 | (7 << 3)]) + b"abc\xffdef")
write("deflate_inflate", "raw_text_message", bytes([0x03, 0x02 | 0x01 | (7 << 3)]) + raw_deflate(text))
write("deflate_inflate", "raw_zip_bomb", bytes([0x03, 0x01]) + raw_deflate(bytes(4096), 9))
write("deflate_inflate", "raw_empty_message", bytes([0x00, 0x01]) + b"\x00")
write("deflate_inflate", "raw_bfinal_stream", bytes([0x02, 0x38]) + (lambda c: c.compress(b"x" * 50) + c.flush())(zlib.compressobj(6, zlib.DEFLATED, -15)))

# reactor_driver: [config0, config1, config2] + (tag, arg) operations; see
# fuzz/src/driver_scenario.rs. A message's arg: bit 0 text, bits 1-2 parts-1,
# bits 3-5 size class (0 empty ... 5: 2000-9000 bytes, 6: 9000-20000 or 60000+).
MSG, PING, CLOSE, GARBAGE, BROKEN, ARRIVE, ROOM, GRANT, FAILW, FIN, CLOCK, SPURIOUS, FAILR, INTR, OTHERS = (
    0, 7, 9, 10, 11, 12, 18, 20, 21, 22, 23, 25, 26, 27, 28)
ALL, ONE, FEW, SOME = 5, 0, 1, 3  # arrival size classes
NONE, UNLIMITED = 0, 4  # write room classes


def ops(*pairs):
    return bytes(b for p in pairs for b in p)


def msg(text=False, parts=1, size=2):
    return (MSG, int(text) | (parts - 1) << 1 | size << 3)


write("reactor_driver", "echo_and_close", bytes([0, 0, 0x08]) + ops(
    (ARRIVE, ALL), msg(True), msg(False, 3, 3), (PING, 10), (ARRIVE, ALL), (CLOSE, 1), (ARRIVE, ALL)))
write("reactor_driver", "bytewise_arrivals_fragmented_text", bytes([0, 0, 0x08]) + ops(
    (ARRIVE, ALL), msg(True, 4, 4), (PING, 3), msg(True, 2, 2), *[(ARRIVE, ONE)] * 60, (CLOSE, 3)))
# max_held_frame 16, chunk 64 / pool 1 KiB, backpressure 64, cork 16; budget 100.
write("reactor_driver", "streaming_tiny_pool_backpressure", bytes([0x01 | 2 << 2 | 2 << 4 | 1 << 6, 0x02, 0x08]) + ops(
    (ARRIVE, ALL), (ROOM, NONE), msg(False, 1, 5), msg(True, 2, 4), (ARRIVE, SOME), (ARRIVE, SOME),
    (GRANT, 10), (ARRIVE, ALL), (ROOM, 1), (ARRIVE, ALL), (ROOM, UNLIMITED), (CLOSE, 2)))
write("reactor_driver", "half_close_with_backlog", bytes([0x01 | 2 << 4, 0x00, 0x00]) + ops(
    (ARRIVE, ALL), (ROOM, NONE), msg(False, 2, 5), msg(True, 1, 3), (ARRIVE, ALL), (FIN, 0), (ROOM, UNLIMITED)))
write("reactor_driver", "write_blocked_forever_large_frame", bytes([0x03 | 1 << 2 | 1 << 4, 0x0C, 0x48]) + ops(
    (ARRIVE, ALL), (ROOM, NONE), msg(False, 1, 6), *[(ARRIVE, SOME)] * 40))
write("reactor_driver", "pool_held_by_others_then_fin", bytes([0x01 | 1 << 2, 0x01, 0x00]) + ops(
    (ARRIVE, ALL), (OTHERS, 2), msg(False, 3, 4), (ARRIVE, ALL), (FIN, 0), (OTHERS, 1)))
# Short timeouts: a frame left unfinished, keepalive ping and close timeouts.
write("reactor_driver", "timers_frame_idle_close", bytes([0x01, 0x00, 0x20]) + ops(
    (ARRIVE, ALL), msg(False, 1, 4), (ARRIVE, FEW), (CLOCK, 3), (CLOCK, 3), (CLOCK, 2 | 8 << 2), (ARRIVE, ALL),
    (CLOCK, 3), (CLOCK, 3)))
write("reactor_driver", "broken_frames_and_errors", bytes([0x02, 0x10, 0x08]) + ops(
    (ARRIVE, ALL), msg(True, 2, 2), (BROKEN, 0), (ARRIVE, SOME), (INTR, 0x0F), (ARRIVE, ALL), (FAILW, 8)))
write("reactor_driver", "home_page_impatient", bytes([0, 0, 0x02 | 0x04 | 0x08]) + ops(
    msg(True), (ARRIVE, SOME), (ROOM, 2), (ARRIVE, ALL), (ROOM, UNLIMITED)))
write("reactor_driver", "garbage_request", bytes([0, 0, 0x03, 12]) + b"GET /x HTTP/1.0" + ops((ARRIVE, ALL)))
