#!/usr/bin/env bash
# Replays issue 15's hostile-client attacks on `health-predict serve` (loopback only, bounded):
#   1. 640 POST /predict/batch of 1,000 `{}` (4 KB each), 160 at a time;
#   2. 640 POST /predict/batch of ~770 KB of unknown keys, 160 at a time;
# while /ready is polled every 20 ms; then 500 idle connections, counted as they are closed.
# Reports the server's peak RSS (VmHWM from /proc/PID/status), status counts, the largest error
# body, /ready's worst latency and the idle connections still open after the idle timeout.
#
#   benches/serve_abuse.sh      # needs a release build and python3
#
# Env: BIN (default $CARGO_TARGET_DIR/release/health-predict or target/release/...), DATA
# (default ../shared/data/diabetic_data.csv.gz), MODEL (a model file; trained with --trials 1
# when unset), REQUESTS (default 640), CONCURRENCY (default 160), IDLE (default 500),
# SERVE_ARGS (extra `serve` flags, e.g. "--max-concurrent 64").
# Targets checked at the end: peak RSS < 128 MB, /ready worst < 100 ms and never failed, no idle
# connection left open after the idle timeout. Exit 1 when a target is missed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
bin="${BIN:-${CARGO_TARGET_DIR:-$root/target}/release/health-predict}"
data="${DATA:-$root/../shared/data/diabetic_data.csv.gz}"
requests="${REQUESTS:-640}"
concurrency="${CONCURRENCY:-160}"
idle="${IDLE:-500}"
work="$(mktemp -d)"
server=""
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
  if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

[[ -x "$bin" ]] || { echo "$bin is missing: cargo build --release" >&2; exit 2; }
((requests <= 5000 && concurrency <= 500 && idle <= 2000)) || { echo "keep REQUESTS<=5000, CONCURRENCY<=500, IDLE<=2000" >&2; exit 2; }
ulimit -n 4096 2>/dev/null || true

echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $("$bin" --version)"
if [[ -z "${MODEL:-}" ]]; then
  MODEL="$work/model.json"
  echo "== training a model (1 trial) on $data"
  "$bin" train --data "$data" --out "$MODEL" --trials 1 >/dev/null
fi

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
# shellcheck disable=SC2086 # SERVE_ARGS is a list of flags
"$bin" -q serve --model "$MODEL" --addr "127.0.0.1:$port" --idle-timeout 2s ${SERVE_ARGS:-} \
  2>"$work/serve.log" &
server=$!
end=$((SECONDS + 30))
until curl -sf -o /dev/null "http://127.0.0.1:$port/ready"; do
  ((SECONDS < end)) || { echo "not ready within 30 s" >&2; cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done
rss() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$server/status"; }
echo "== serving on 127.0.0.1:$port (pid $server); RSS after start $(rss VmRSS) kB"

# /ready is polled by curl in its own process (a poller thread inside the Python client would
# measure the client's GIL queue, not the server).
touch "$work/attacking"
(
  while [[ -e "$work/attacking" ]]; do
    curl -s -o /dev/null -m 5 -w '%{http_code} %{time_total}\n' "http://127.0.0.1:$port/ready" \
      >>"$work/ready.log" || echo "000 5" >>"$work/ready.log"
    sleep 0.02
  done
) &
poller=$!
python3 - "$port" "$requests" "$concurrency" "$idle" "$work" <<'PY'
import http.client, json, socket, sys, threading, time
port, total, conc, idle = (int(a) for a in sys.argv[1:5])
work = sys.argv[5]

def body_empties():
    return json.dumps({"encounters": [{}] * 1000}).encode()

def body_keys():
    keys = {f"unknown_{i:06}": 1 for i in range(21000)}
    enc = {f"unknown_{i:06}": 1 for i in range(21000, 42000)}
    return json.dumps({**keys, "encounters": [enc]}).encode()

def attack(name, body):
    statuses, biggest, errors = {}, [0], [0]
    lock = threading.Lock()
    per = total // conc
    def worker():
        for _ in range(per):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                c.request("POST", "/predict/batch", body, {"Content-Type": "application/json"})
                r = c.getresponse()
                data = r.read()
                c.close()
                with lock:
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                    biggest[0] = max(biggest[0], len(data))
            except Exception:
                with lock:
                    errors[0] += 1
    t = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for th in threads: th.start()
    for th in threads: th.join()
    print(f"{name}: {per * conc} requests ({len(body)} bytes each), {conc} concurrent, "
          f"{time.perf_counter() - t:.1f} s; statuses {dict(sorted(statuses.items()))}, "
          f"client errors {errors[0]}, largest response body {biggest[0]} bytes", flush=True)

open(f"{work}/attacking", "w").close()
attack("1000 x {}", body_empties())
attack("unknown keys", body_keys())
import os
os.remove(f"{work}/attacking")

socks = []
for _ in range(idle):
    s = socket.create_connection(("127.0.0.1", port)); socks.append(s)
print(f"{idle} idle connections opened; waiting 5 s (idle timeout 2 s)", flush=True)
time.sleep(5)
open_left = 0
for s in socks:
    s.settimeout(0.5)
    try:
        if s.recv(1) != b"":
            open_left += 1
    except socket.timeout:
        open_left += 1
    except OSError:
        pass
    s.close()
print(f"idle connections still open after 5 s: {open_left} of {idle}", flush=True)
with open(f"{work}/idle", "w") as f:
    f.write(f"{open_left}\n")
PY

wait "$poller" 2>/dev/null || true
peak_kb="$(rss VmHWM)"
read -r ready_polls ready_worst ready_failed < <(awk '{n++; t=$2*1000; if (t>w) w=t; if ($1!="200") f++} END {printf "%d %.1f %d\n", n, w, f}' "$work/ready.log")
echo "/ready during the attacks (curl, own process): $ready_polls polls, worst $ready_worst ms, $ready_failed failed"
read -r idle_left <"$work/idle"
echo "== peak RSS (VmHWM): $((peak_kb / 1024)) MB; load $(cut -d' ' -f1-3 /proc/loadavg)"
fail=0
((peak_kb < 128 * 1024)) || { echo "MISSED: peak RSS >= 128 MB"; fail=1; }
python3 -c "import sys; sys.exit(0 if float('$ready_worst') < 100 else 1)" || { echo "MISSED: /ready worst >= 100 ms"; fail=1; }
((ready_failed == 0)) || { echo "MISSED: /ready failed $ready_failed times"; fail=1; }
((idle_left == 0)) || { echo "MISSED: $idle_left idle connections left open"; fail=1; }
kill "$server"; wait "$server" 2>/dev/null || true; server=""
((fail == 0)) && echo "== all targets met"
exit "$fail"
