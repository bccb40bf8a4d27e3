#!/usr/bin/env bash
# Load benchmark of `health-predict serve` against a FastAPI + XGBoost service doing the upstream
# API's per-request work, same machine, same run. Loopback only; every phase is bounded.
#
#   benches/serve_load.sh            # needs: a release build, wrk (Debian), python3 -m venv
#
# Env: BIN (default target/release/health-predict, or $CARGO_TARGET_DIR/release/...), DATA
# (default ../shared/data/diabetic_data.csv.gz), MODEL (a model file; trained with --trials 1
# when unset), VENV (default /tmp/health-predict-bench-venv), SECONDS_PER_RUN (default 10),
# RATE (fixed-rate requests/s, default 1000), CONNECTIONS (wrk, default 8), THREADS (wrk, 1).
# Targets checked at the end: fixed-rate p99 < 1 ms, requests/s >= 20x the baseline, cold start
# to ready < 200 ms. Exit 1 when a target is missed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
bin="${BIN:-${CARGO_TARGET_DIR:-$root/target}/release/health-predict}"
data="${DATA:-$root/../shared/data/diabetic_data.csv.gz}"
venv="${VENV:-/tmp/health-predict-bench-venv}"
secs="${SECONDS_PER_RUN:-10}"
rate="${RATE:-1000}"
conns="${CONNECTIONS:-8}"
wrk_threads="${THREADS:-1}"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 2; }
[[ -x "$bin" ]] || { echo "$bin is missing: cargo build --release" >&2; exit 2; }
((secs <= 60)) || { echo "SECONDS_PER_RUN must be at most 60" >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # URL DEADLINE_S
  local end=$((SECONDS + $2))
  until curl -sf -o /dev/null "$1"; do
    ((SECONDS < end)) || { echo "$1 did not answer within $2 s" >&2; exit 1; }
    sleep 0.1
  done
}

echo "== machine: $(nproc) cores, $(uname -sr); $("$bin" --version)"
if [[ -z "${MODEL:-}" ]]; then
  MODEL="$work/model.json"
  echo "== training a model (1 trial) on $data"
  "$bin" train --data "$data" --out "$MODEL" --trials 1 >/dev/null
fi

echo "== Python baseline venv: $venv"
if [[ ! -x "$venv/bin/uvicorn" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q fastapi==0.163.2 uvicorn==0.54.0 xgboost==3.2.0 pandas==3.1.1 \
    scikit-learn==1.9.1 joblib
fi
"$venv/bin/python" -c 'import fastapi, uvicorn, xgboost, pandas, sklearn; print("fastapi", fastapi.__version__, "xgboost", xgboost.__version__, "pandas", pandas.__version__, "scikit-learn", sklearn.__version__)'

# The request: the API's own example encounter.
python3 - "$work/body.json" <<'PY'
import json, sys
body = {"race": "Caucasian", "gender": "Female", "age": "[70-80)", "admission_type_id": 1,
        "discharge_disposition_id": 1, "admission_source_id": 7, "time_in_hospital": 5,
        "num_lab_procedures": 47, "num_procedures": 1, "num_medications": 16,
        "number_outpatient": 0, "number_emergency": 0, "number_inpatient": 1, "diag_1": "428",
        "diag_2": "250.02", "diag_3": "401", "number_diagnoses": 9, "max_glu_serum": "None",
        "A1Cresult": ">8", "change": "Ch", "diabetesMed": "Yes"}
meds = ["metformin", "repaglinide", "nateglinide", "chlorpropamide", "glimepiride",
        "acetohexamide", "glipizide", "glyburide", "tolbutamide", "pioglitazone", "rosiglitazone",
        "acarbose", "miglitol", "troglitazone", "tolazamide", "examide", "citoglipton", "insulin",
        "glyburide_metformin", "glipizide_metformin", "glimepiride_pioglitazone",
        "metformin_rosiglitazone", "metformin_pioglitazone"]
for m in meds:
    body[m] = "No"
body["metformin"], body["insulin"] = "Steady", "Up"
json.dump(body, open(sys.argv[1], "w"))
PY
python3 - "$work/body.json" "$work/post.lua" <<'PY'
import sys
body = open(sys.argv[1]).read()
open(sys.argv[2], "w").write(
    'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
    f'wrk.body = [==[{body}]==]\n'
    'done = function(summary, latency, requests)\n'
    '  io.write(string.format("WRK %d requests, %d errors(status), %.1f req/s, p50 %.3f ms, p99 %.3f ms\\n",\n'
    '    summary.requests, summary.errors.status, summary.requests / (summary.duration / 1e6),\n'
    '    latency:percentile(50) / 1000, latency:percentile(99) / 1000))\n'
    'end\n')
PY

echo "== cold start to ready (spawn -> first 200 on /ready), 5 runs"
cold=$(python3 "$here/loadgen.py" cold-start "$bin" "$MODEL" --runs 5)
echo "$cold"

port=$(free_port)
"$bin" --quiet serve --model "$MODEL" --addr "127.0.0.1:$port" & pids+=($!)
wait_http "http://127.0.0.1:$port/ready" 30
echo "== health-predict serve: fixed rate $rate req/s for $secs s, one connection"
fixed=$(python3 "$here/loadgen.py" fixed-rate "http://127.0.0.1:$port/predict" "$work/body.json" --rate "$rate" --seconds "$secs")
echo "$fixed"
# The server's own view of the same requests (its latency histogram, excluding the client).
server_side=$(curl -sf "http://127.0.0.1:$port/metrics" | python3 -c '
import re, sys, json
b = {}
for line in sys.stdin:
    m = re.match(r"health_predict_http_request_duration_seconds_bucket\{route=\"/predict\",le=\"([^\"]+)\"\} (\d+)", line)
    if m: b[m.group(1)] = int(m.group(2))
total = b["+Inf"]
print(json.dumps({"requests": total, "share_under_0.5ms": round(b["0.0005"] / total, 5), "share_under_1ms": round(b["0.001"] / total, 5)}))')
echo "server-side: $server_side"
echo "== health-predict serve: wrk -t$wrk_threads -c$conns -d${secs}s (max throughput)"
ours=$(wrk -t"$wrk_threads" -c"$conns" -d"${secs}s" -s "$work/post.lua" "http://127.0.0.1:$port/predict" | grep '^WRK')
echo "$ours"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

echo "== baseline: training the FastAPI + XGBoost service's preprocessor and model"
"$venv/bin/python" "$here/upstream_api.py" train "$data" "$work/upstream.joblib"
bport=$(free_port)
(cd "$here" && ARTIFACT="$work/upstream.joblib" exec "$venv/bin/uvicorn" upstream_api:app \
  --host 127.0.0.1 --port "$bport" --log-level warning) & pids+=($!)
wait_http "http://127.0.0.1:$bport/health" 120
curl -sf -H 'content-type: application/json' -d @"$work/body.json" "http://127.0.0.1:$bport/predict" >/dev/null \
  || { echo "the baseline rejects the request" >&2; exit 1; }
echo "== baseline (uvicorn, 1 worker): wrk -t$wrk_threads -c$conns -d${secs}s"
theirs=$(wrk -t"$wrk_threads" -c"$conns" -d"${secs}s" -s "$work/post.lua" "http://127.0.0.1:$bport/predict" | grep '^WRK')
echo "$theirs"

echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
python3 - "$cold" "$fixed" "$ours" "$theirs" "$server_side" <<'PY'
import json, re, sys
cold, fixed, server = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[5])
rps = lambda line: float(re.search(r"([\d.]+) req/s", line).group(1))
errors = lambda line: int(re.search(r"(\d+) errors", line).group(1))
ours, theirs = rps(sys.argv[3]), rps(sys.argv[4])
ratio = ours / theirs if theirs else float("inf")
checks = [
    ("fixed-rate p99 < 1 ms", fixed["p99_ms"] < 1.0 and fixed["errors"] == 0,
     f'p99 {fixed["p99_ms"]} ms at {fixed["rate"]:.0f} req/s (p50 {fixed["p50_ms"]} ms, max {fixed["max_ms"]} ms); '
     f'server-side {100 * server["share_under_1ms"]:.2f}% under 1 ms'),
    (">= 20x baseline req/s", ratio >= 20 and errors(sys.argv[3]) == 0,
     f"{ours:.0f} vs {theirs:.1f} req/s = {ratio:.1f}x"),
    ("cold start < 200 ms", cold["median_ms"] < 200, f'median {cold["median_ms"]} ms, max {cold["max_ms"]} ms'),
]
print("== summary")
for name, ok, detail in checks:
    print(f'{"PASS" if ok else "FAIL"}  {name}: {detail}')
sys.exit(0 if all(ok for _, ok, _ in checks) else 1)
PY
