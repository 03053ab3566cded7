#!/usr/bin/env python3
"""Prove the private rsyslogd started by scripts/test-services receives messages
byte-intact over UDP, TCP (octet-counted and LF-framed), TLS and mutual TLS.

Reads the TAPFWD_* variables printed by `scripts/test-services env`.
Stdlib only. Prints one OK/FAIL line per check and 'N passed, M failed'.
"""
import json, os, socket, ssl, sys, time, uuid

E = dict(os.environ)
if "TAPFWD_SYSLOG_TCP_LOG" not in E:  # not eval'ed: ask the script
    import shlex, subprocess
    out = subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), "test-services"), "env"],
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        k, _, v = line.removeprefix("export ").partition("=")
        E[k] = shlex.split(v)[0]
HOST = E.get("TAPFWD_SYSLOG_HOST", "127.0.0.1")
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'OK  ' if ok else 'FAIL'} {name} {detail}", flush=True)


def rfc5424(msg: bytes, sd: str) -> bytes:
    ts = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return f"<134>1 {ts} tapfwd-host tapfwd {os.getpid()} TAP {sd} ".encode() + msg


def octet(frame: bytes) -> bytes:
    return str(len(frame)).encode() + b" " + frame


def wait_line(path, marker: bytes, timeout=5.0):
    """Return (raw line without the trailing LF, elapsed seconds) of the line containing marker."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with open(path, "rb") as f:
                for line in f:
                    # only complete lines: rsyslog may write a big message in
                    # several write() calls, so a reader can see half a line
                    if marker in line and line.endswith(b"\n"):
                        return line[:-1], time.time() - t0
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    return None, timeout


def wait_json(path, marker: str, timeout=5.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with open(path, "rb") as f:
                for line in f:
                    if marker.encode() in line and line.endswith(b"\n"):
                        return json.loads(line)
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    return None


def tls_ctx(client_cert=False):
    ctx = ssl.create_default_context(cafile=E["TAPFWD_TLS_CA"])
    if client_cert:
        ctx.load_cert_chain(E["TAPFWD_TLS_CLIENT_CERT"], E["TAPFWD_TLS_CLIENT_KEY"])
    return ctx


def send_stream(port, payload: bytes, ctx=None):
    s = socket.create_connection((HOST, port), timeout=5)
    if ctx:
        s = ctx.wrap_socket(s, server_hostname="localhost")
    s.sendall(payload)
    if ctx:
        try:
            s.unwrap()
        except (ssl.SSLError, OSError):
            pass
    s.close()


def send_udp(payload: bytes):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(payload, (HOST, int(E["TAPFWD_SYSLOG_UDP_PORT"])))
    s.close()


def big_json(marker, size):
    # quotes, backslashes, UTF-8 (2/3/4-byte), JSON escapes written literally
    unit = 'q"uo\\te \\" \\\\ \\n \\u00e9 é € 😀 日本 '
    body = {"marker": marker, "text": "", "url": "https://x.example/a?b=\"c\"&d=\\e"}
    s = json.dumps(body, ensure_ascii=False)
    pad = (size - len(s.encode())) // len(unit.encode()) + 1
    body["text"] = unit * pad
    return json.dumps(body, ensure_ascii=False).encode()


def roundtrip(name, port_or_udp, log, jsonl, msg: bytes, framing="octet", ctx=None, sd=None):
    marker = uuid.uuid4().hex
    if marker.encode() not in msg:
        msg = msg + b" " + marker.encode()
    sd = sd or f'[tap@32473 id="{marker}" kind="msg\\"quoted\\]"]'
    frame = rfc5424(msg, sd)
    if port_or_udp == "udp":
        send_udp(frame)
    else:
        payload = octet(frame) if framing == "octet" else frame + b"\n"
        send_stream(port_or_udp, payload, ctx)
    line, secs = wait_line(log, marker.encode())
    ok = line == frame
    detail = f"{len(frame)} bytes, seen after {secs*1000:.0f} ms"
    if not ok:
        detail += f" MISMATCH got={None if line is None else len(line)} bytes: {line[:120] if line else None!r}"
    check(f"{name}: raw line == sent frame", ok, detail)
    j = wait_json(jsonl, marker)
    jok = (j is not None and j["rawmsg"].encode() == frame and j["structured_data"] == sd
           and j["msg"].encode() == msg and j["app_name"] == "tapfwd" and j["msgid"] == "TAP")
    check(f"{name}: jsonl rawmsg/structured_data/msg", jok,
          "" if jok else f"got={json.dumps(j)[:300] if j else None}")
    return ok and jok


def main():
    tcp, tls, mtls = (int(E[k]) for k in ("TAPFWD_SYSLOG_TCP_PORT", "TAPFWD_SYSLOG_TLS_PORT", "TAPFWD_SYSLOG_MTLS_PORT"))
    L = lambda n: (E[f"TAPFWD_SYSLOG_{n}_LOG"], E[f"TAPFWD_SYSLOG_{n}_JSONL"])
    roundtrip("tcp octet-counted 5424", tcp, *L("TCP"), b"hello octet counted")
    roundtrip("tcp LF-framed 5424", tcp, *L("TCP"), b"hello LF framed", framing="lf")
    roundtrip("tls 5424", tls, *L("TLS"), b"hello over TLS", ctx=tls_ctx())
    roundtrip("mtls 5424 (client cert)", mtls, *L("MTLS"), b"hello over mutual TLS", ctx=tls_ctx(True))
    roundtrip("udp 5424", "udp", *L("UDP"), b"hello over UDP")
    for size in (20_000, 200_000):
        m = big_json(uuid.uuid4().hex, size)
        roundtrip(f"tcp {size//1000}KB JSON (quotes/backslashes/UTF-8)", tcp, *L("TCP"), m)
        roundtrip(f"tls {size//1000}KB JSON", tls, *L("TLS"), m, ctx=tls_ctx())
    roundtrip("udp 20KB JSON", "udp", *L("UDP"), big_json(uuid.uuid4().hex, 20_000))
    roundtrip("udp 50KB JSON (~60KB datagram)", "udp", *L("UDP"), big_json(uuid.uuid4().hex, 50_000))
    # size limit: a frame of exactly MAX bytes arrives whole, a longer one is truncated to MAX
    mx = int(E["TAPFWD_SYSLOG_MAX_MESSAGE_SIZE"])
    for over in (0, 1):
        marker = uuid.uuid4().hex
        head = rfc5424(marker.encode() + b" ", "-")
        frame = head + b"x" * (mx + over - len(head))
        marker2 = uuid.uuid4().hex
        frame2 = rfc5424(marker2.encode(), "-")
        send_stream(tcp, octet(frame) + octet(frame2))  # next frame on the same connection
        line, _ = wait_line(E["TAPFWD_SYSLOG_TCP_LOG"], marker.encode())
        check(f"tcp frame of MAX{'+1' if over else ''}={len(frame)} bytes -> {'truncated to MAX' if over else 'intact'}",
              line == frame[:mx], f"got {None if line is None else len(line)} bytes")
        line2, _ = wait_line(E["TAPFWD_SYSLOG_TCP_LOG"], marker2.encode())
        check("  ... and the next frame on that connection is intact", line2 == frame2)
    roundtrip("tcp control chars (TAB, 0x01, 0x1b, DEL, CR)", tcp, *L("TCP"), b"a\tb\x01c\x1bd\x7fe\rf")
    roundtrip("tcp UTF-8 BOM msg", tcp, *L("TCP"), b"\xef\xbb\xbf{\"k\":\"v\"}")
    # an LF inside an octet-counted frame: raw .log splits the line, .jsonl keeps it escaped
    marker = uuid.uuid4().hex
    frame = rfc5424(f"line1\nline2 {marker}".encode(), "-")
    send_stream(tcp, octet(frame))
    j = wait_json(E["TAPFWD_SYSLOG_TCP_JSONL"], marker)
    check("tcp octet-counted frame with embedded LF: jsonl rawmsg intact", j is not None and j["rawmsg"].encode() == frame)
    # documented rsyslog behaviour: a NUL byte is always stored as the 4 chars "#000"
    marker = uuid.uuid4().hex
    frame = rfc5424(f"nul\x00byte {marker}".encode(), "-")
    send_stream(tcp, octet(frame))
    line, _ = wait_line(E["TAPFWD_SYSLOG_TCP_LOG"], marker.encode())
    check("tcp NUL byte arrives as '#000' (rsyslog always escapes NUL)", line == frame.replace(b"\x00", b"#000"))
    # biggest UDP datagram loopback allows
    marker = uuid.uuid4().hex
    head = rfc5424(marker.encode() + b" ", "-")
    frame = head + b"y" * (65507 - len(head))
    send_udp(frame)
    line, _ = wait_line(E["TAPFWD_SYSLOG_UDP_LOG"], marker.encode())
    check("udp 65507-byte datagram (max) intact", line == frame)
    # mutual TLS must refuse a client without a certificate
    marker = uuid.uuid4().hex
    try:
        send_stream(mtls, octet(rfc5424(marker.encode(), "-")), tls_ctx(False))
    except (ssl.SSLError, OSError):
        pass
    line, _ = wait_line(E["TAPFWD_SYSLOG_MTLS_LOG"], marker.encode(), timeout=1.5)
    check("mtls rejects client without certificate", line is None)
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
