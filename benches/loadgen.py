"""Bounded load helpers for benches/serve_load.sh (loopback only, standard library only).

  loadgen.py fixed-rate URL BODY_FILE --rate R --seconds S
      One keep-alive connection sends POSTs on a fixed schedule (request i at start + i/R).
      Latency is measured from the scheduled send time to the end of the response, so a stall
      also counts against the requests that should have been sent during it (no coordinated
      omission). Client overhead (Python) is included: the numbers are upper bounds.
  loadgen.py cold-start BIN MODEL --runs N
      Starts `BIN serve --model MODEL --addr 127.0.0.1:PORT` N times and measures the time from
      spawn to the first HTTP 200 on /ready (polled every 0.5 ms), then stops it with SIGTERM.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from urllib.parse import urlsplit


def loopback(url):
    u = urlsplit(url)
    if u.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"refusing to load {u.hostname}: loopback only")
    return u.hostname, u.port or 80, u.path or "/"


def read_response(sock, buf):
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        rest += chunk
    return status, rest[length:]


def pct(sorted_values, q):
    i = min(len(sorted_values) - 1, max(0, int(round(q * len(sorted_values) + 0.5)) - 1))
    return sorted_values[i]


def fixed_rate(args):
    host, port, path = loopback(args.url)
    body = open(args.body, "rb").read()
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    for _ in range(200):  # warm the connection and both processes' caches
        sock.sendall(request)
        _, buf = read_response(sock, buf)
    n = int(args.rate * args.seconds)
    interval = 1.0 / args.rate
    latencies, errors = [], 0
    start = time.perf_counter()
    for i in range(n):
        due = start + i * interval
        while True:
            now = time.perf_counter()
            if now >= due:
                break
            if due - now > 0.0003:
                time.sleep(due - now - 0.0002)
        sock.sendall(request)
        status, buf = read_response(sock, buf)
        latencies.append(time.perf_counter() - due)
        if status != 200:
            errors += 1
    elapsed = time.perf_counter() - start
    latencies.sort()
    ms = lambda s: round(s * 1000, 3)
    print(json.dumps({
        "requests": n, "errors": errors, "rate": args.rate, "achieved_rate": round(n / elapsed, 1),
        "p50_ms": ms(pct(latencies, 0.50)), "p90_ms": ms(pct(latencies, 0.90)),
        "p99_ms": ms(pct(latencies, 0.99)), "p999_ms": ms(pct(latencies, 0.999)),
        "max_ms": ms(latencies[-1]),
    }))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ready(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def cold_start(args):
    times = []
    for _ in range(args.runs):
        port = free_port()
        t0 = time.perf_counter()
        p = subprocess.Popen([args.bin, "serve", "--model", args.model, "--addr", f"127.0.0.1:{port}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = t0 + 30
        while not ready(port):
            if time.perf_counter() > deadline or p.poll() is not None:
                p.kill()
                sys.exit("the server did not become ready within 30 s")
            time.sleep(0.0005)
        times.append(time.perf_counter() - t0)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    ms = [round(t * 1000, 1) for t in times]
    print(json.dumps({"runs": args.runs, "median_ms": statistics.median(ms), "max_ms": max(ms),
                      "all_ms": ms}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixed-rate")
    f.add_argument("url")
    f.add_argument("body")
    f.add_argument("--rate", type=float, default=500)
    f.add_argument("--seconds", type=float, default=10)
    c = sub.add_parser("cold-start")
    c.add_argument("bin")
    c.add_argument("model")
    c.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if args.cmd == "fixed-rate":
        if args.rate <= 0 or args.rate > 20000 or args.seconds <= 0 or args.seconds > 120:
            sys.exit("rate must be in (0, 20000] and seconds in (0, 120]")
        fixed_rate(args)
    else:
        cold_start(args)


if __name__ == "__main__":
    main()
