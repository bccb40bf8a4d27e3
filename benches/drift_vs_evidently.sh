#!/usr/bin/env bash
# Runs Evidently 0.4.22 (DataDriftPreset, defaults) and `health-predict drift` on the same
# reference and five batches of the real data, in one run, and prints per-column agreement
# (decision equal, score equal to 1e-6 relative) and the wall times with their ratio.
#
#   benches/drift_vs_evidently.sh [DATA]        DATA defaults to ../shared/data/diabetic_data.csv.gz
#
# Environment: HP_BIN (binary, default target/release/health-predict under $CARGO_TARGET_DIR),
# EVIDENTLY_VENV (default /tmp/hp-evidently-venv), REPEAT (timed runs per batch, default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data/diabetic_data.csv.gz}"
VENV="${EVIDENTLY_VENV:-/tmp/hp-evidently-venv}"
BIN="${HP_BIN:-${CARGO_TARGET_DIR:-target}/release/health-predict}"
REPEAT="${REPEAT:-3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

[ -x "$BIN" ] || { echo "build first: cargo build --release (or set HP_BIN)" >&2; exit 2; }
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import evidently' 2>/dev/null; then
  python3 -m venv "$VENV"
  # Evidently 0.4.22 predates numpy 2 and pandas 3: pin what it was released against.
  "$VENV/bin/pip" install -q 'evidently==0.4.22' 'numpy==1.26.4' 'pandas==2.2.2' 'scipy==1.13.1' \
    'scikit-learn==1.5.0' 'statsmodels==0.14.2' 'pyarrow==16.1.0'
fi

# The split: `health-predict data split` when this build has it (the upstream's layout with the
# engineered drift batches); otherwise the same reference (the upstream's training rows, file
# rows 0..14246) and five seeded random 2,000-row batches from the future 80%.
SPLIT="$WORK/split"
if "$BIN" data split --data "$DATA" --out "$SPLIT" >/dev/null 2>"$WORK/split.err"; then
  REF="$SPLIT/initial/train.csv"
  BATCHES=("$SPLIT"/batches/batch_{1..5}.csv)
  echo "split: health-predict data split"
else
  echo "split: fallback (data split unavailable: $(head -1 "$WORK/split.err"))"
  "$VENV/bin/python" - "$DATA" "$SPLIT" <<'PY'
import sys, os, pandas as pd, numpy as np
data, out = sys.argv[1], sys.argv[2]
df = pd.read_csv(data, dtype=str, keep_default_na=False)
os.makedirs(out + "/batches", exist_ok=True)
initial = int(len(df) * 0.2)
df.iloc[:int(initial * 0.7)].to_csv(out + "/reference.csv", index=False)
future = df.iloc[initial:]
rng = np.random.default_rng(42)
for i in range(1, 6):
    future.iloc[np.sort(rng.choice(len(future), 2000, replace=False))].to_csv(
        f"{out}/batches/batch_{i}.csv", index=False)
PY
  REF="$SPLIT/reference.csv"
  BATCHES=("$SPLIT"/batches/batch_{1..5}.csv)
fi

# A 1,000-row reference exercises Evidently's small-reference tests (KS, chi-squared, Z-test).
head -n 1001 "$REF" > "$WORK/reference_small.csv"
for i in 1 2 3 4 5; do
  "$BIN" --quiet --output json drift --reference "$WORK/reference_small.csv" \
    --current "${BATCHES[$((i-1))]}" --report "$WORK/hps_$i" > /dev/null
  for r in $(seq "$REPEAT"); do
    start=$(date +%s.%N)
    "$BIN" --quiet --output json drift --reference "$REF" --current "${BATCHES[$((i-1))]}" \
      --report "$WORK/hp_$i" > "$WORK/hp_${i}_$r.json"
    end=$(date +%s.%N)
    echo "$start $end" > "$WORK/hp_${i}_$r.wall"
  done
done

"$VENV/bin/python" -W ignore - "$REF" "$WORK" "$REPEAT" "${BATCHES[@]}" <<'PY'
import sys, json, time, statistics
import pandas as pd
from evidently.report import Report
from evidently.metric_preset import DataDriftPreset

ref_path, work, repeat, batches = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
EXCLUDE = {"encounter_id", "patient_nbr", "readmitted", "diag_1", "diag_2", "diag_3"}
# '?' and 'None' are values (categories), as the files write them; integers stay integers.
read = lambda p: pd.read_csv(p, keep_default_na=False, na_values=[])
ref_full = read(ref_path)
cols = [c for c in ref_full.columns if c not in EXCLUDE]
ref = ref_full[cols]
NAMES = {"Wasserstein distance (normed)": "wasserstein", "Jensen-Shannon distance": "jensen-shannon",
         "K-S p_value": "ks", "chi-square p_value": "chi-square", "Z-test p_value": "z-test",
         "PSI": "psi", "Kullback-Leibler divergence": "kl-div"}
Report(metrics=[DataDriftPreset()]).run(reference_data=ref, current_data=read(batches[0])[cols])  # warm-up

total_cols = agree_cols = 0
ev_times, hp_times, hp_walls, ev_all, hp_all = [], [], [], [], []
print(f"reference: {len(ref)} rows, {len(cols)} columns")
print(f"{'batch':<7}{'evidently':>12}{'this':>10}{'ratio':>9}{'drifted ev/hp':>15}{'share':>8}  agreement")
for i, b in enumerate(batches, 1):
    cur = read(b)[cols]
    times = []
    for _ in range(repeat):
        rep = Report(metrics=[DataDriftPreset()])
        t = time.perf_counter(); rep.run(reference_data=ref, current_data=cur); times.append(time.perf_counter() - t)
    ev_t = statistics.median(times)
    ev_all += times
    res = rep.as_dict()["metrics"][1]["result"]
    ev = res["drift_by_columns"]
    hp_runs = [json.load(open(f"{work}/hp_{i}_{r}.json")) for r in range(1, repeat + 1)]
    hp_t = statistics.median(r["detect_ms"] for r in hp_runs) / 1e3
    hp_all += [r["detect_ms"] / 1e3 for r in hp_runs]
    walls = []
    for r in range(1, repeat + 1):
        s, e = map(float, open(f"{work}/hp_{i}_{r}.wall").read().split())
        walls.append(e - s)
    hp_walls.append(statistics.median(walls))
    hp = {c["column"]: c for c in json.load(open(f"{work}/hp_{i}/drift.json"))["columns"]}
    bad = []
    for name, e in ev.items():
        h = hp[name]
        es, hs = e["drift_score"], h["score"]
        rel = abs(es - hs) / abs(es) if es != 0 else abs(hs)
        same_test = NAMES.get(e["stattest_name"]) == h["test"]
        ok = same_test and e["drift_detected"] == h["drifted"] and (rel <= 1e-6 or abs(es - hs) <= 1e-12)
        total_cols += 1
        agree_cols += ok
        if not ok:
            bad.append(f"{name}: evidently {e['stattest_name']} {es!r} {e['drift_detected']} vs {h['test']} {hs!r} {h['drifted']}")
    ev_times.append(ev_t); hp_times.append(hp_t)
    print(f"{i:<7}{ev_t*1e3:>10.1f}ms{hp_t*1e3:>8.2f}ms{ev_t/hp_t:>8.0f}x{res['number_of_drifted_columns']:>8}/{hp_runs[0]['drifted_columns']:<6}"
          f"{res['share_of_drifted_columns']:>8.3f}  {len(ev)-len(bad)}/{len(ev)} columns")
    for line in bad:
        print("   DIFFERS", line)

def compare(ev, hp):
    bad = []
    for name, e in ev.items():
        h = hp[name]
        es, hs = e["drift_score"], h["score"]
        rel = abs(es - hs) / abs(es) if es != 0 else abs(hs)
        same_test = NAMES.get(e["stattest_name"]) == h["test"]
        if not (same_test and e["drift_detected"] == h["drifted"] and (rel <= 1e-6 or abs(es - hs) <= 1e-12)):
            bad.append(f"{name}: evidently {e['stattest_name']} {es!r} {e['drift_detected']} vs {h['test']} {hs!r} {h['drifted']}")
    return bad


small = ref.iloc[:1000]
print("small reference (first 1,000 rows):")
for i, b in enumerate(batches, 1):
    rep = Report(metrics=[DataDriftPreset()])
    rep.run(reference_data=small, current_data=read(b)[cols])
    ev = rep.as_dict()["metrics"][1]["result"]["drift_by_columns"]
    hp = {c["column"]: c for c in json.load(open(f"{work}/hps_{i}/drift.json"))["columns"]}
    bad = compare(ev, hp)
    tests = {}
    for c in hp.values():
        tests[c["test"]] = tests.get(c["test"], 0) + 1
    total_cols += len(ev)
    agree_cols += len(ev) - len(bad)
    print(f"  batch {i}: {len(ev)-len(bad)}/{len(ev)} columns agree; tests {dict(sorted(tests.items()))}")
    for line in bad:
        print("   DIFFERS", line)
ev_m, hp_m = statistics.median(ev_times), statistics.median(hp_times)
print(f"agreement: {agree_cols}/{total_cols} column results (test, decision, score to 1e-6 relative)")
print(f"median Report.run {ev_m*1e3:.1f} ms vs health-predict detect {hp_m*1e3:.2f} ms: {ev_m/hp_m:.0f}x faster"
      f" (whole health-predict process incl. CSV loading: {statistics.median(hp_walls)*1e3:.0f} ms)")
print(f"fastest runs: Report.run {min(ev_all)*1e3:.1f} ms, detect {min(hp_all)*1e3:.2f} ms "
      f"({min(ev_all)/min(hp_all):.0f}x); {repeat} timed runs per batch, 2,000-row batches")
sys.exit(0 if agree_cols == total_cols else 1)
PY
