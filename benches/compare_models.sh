#!/usr/bin/env bash
# Trains this project's model, XGBoost and LightGBM on the SAME patient-grouped split and the SAME
# encoded features, and prints test ROC AUC and training wall time side by side, with 1 and 2
# threads. A benchmark, not a test: run it by hand (or in a scheduled job) with the release build.
#
#   benches/compare_models.sh [DATA]
#
# DATA defaults to ../shared/data/diabetic_data.csv.gz beside the checkout. Environment:
#   HEALTH_PREDICT_BIN  the binary to measure (default: target/release/health-predict, built if absent)
#   BASELINE_BIN        optional second build to time beside it (e.g. the previous release), same rows
#   BENCH_VENV          where the Python venv lives (default: benches/.venv, git-ignored)
#   BENCH_THREADS       thread counts to measure (default: "1 2")
#   BENCH_SEED          split and learner seed (default: 42)
#   BENCH_SEARCH        "0" skips the `--trials 20` vs `--trials 1` search timing (default: run it)
#
# Every timing is printed with the load average at that moment: on a shared machine the numbers
# are only comparable within one run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="${1:-$root/../shared/data/diabetic_data.csv.gz}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
bin="${HEALTH_PREDICT_BIN:-$target_dir/release/health-predict}"
venv="${BENCH_VENV:-$root/benches/.venv}"
baseline="${BASELINE_BIN:-}"
search="${BENCH_SEARCH:-1}"
threads="${BENCH_THREADS:-1 2}"
seed="${BENCH_SEED:-42}"

if [[ ! -f "$data" ]]; then
  echo "error: no data at $data" >&2
  echo "hint: pass the path of diabetic_data.csv(.gz), or get it with \`health-predict data fetch\`" >&2
  exit 2
fi
if [[ ! -x "$bin" ]]; then
  echo "building the release binary (HEALTH_PREDICT_BIN is unset and $bin is absent)" >&2
  (cd "$root" && cargo build --release --bin health-predict)
fi
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  xgboost==3.2.0 lightgbm==4.7.0 pandas==3.1.1 scikit-learn==1.9.1

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The exact split and features `train` uses, written by the binary itself.
"$bin" --quiet --output json train --data "$data" --seed "$seed" \
  --export-features "$work/features" > "$work/export.json"

"$venv/bin/python" - "$work" "$threads" "$seed" "$bin" "$data" "$baseline" "$search" <<'PY'
import json, os, subprocess, sys, time

import lightgbm as lgb
import pandas as pd
import xgboost as xgb
from sklearn.metrics import roc_auc_score

work, threads, seed = sys.argv[1], [int(t) for t in sys.argv[2].split()], int(sys.argv[3])
binary, data, baseline, search = sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7] != "0"
export = json.load(open(f"{work}/export.json"))
p = export["default_params"]
split = {n: pd.read_csv(f"{work}/features/{n}.csv") for n in ("train", "validation", "test")}
X = {n: d.drop(columns="label") for n, d in split.items()}
y = {n: d["label"] for n, d in split.items()}
assert list(X["train"].columns) == export["features"], "feature order differs"

def load():
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())

def train(b, t, trials, name):
    """One whole `train` command; returns its JSON and the command's wall time."""
    start = time.perf_counter()
    out = subprocess.run([b, "--quiet", "--output", "json", "train", "--data", data, "--seed",
                          str(seed), "--trials", str(trials), "--threads", str(t), "--out",
                          f"{work}/{name}-{t}-{trials}.hpm"], check=True, capture_output=True)
    return json.loads(out.stdout), time.perf_counter() - start

# The same budget and stopping rule as this project's first trial: up to 1000 trees, early stopping
# after 40 rounds without a better validation log loss; each library's own defaults otherwise, with
# the learning rate and tree size matched (leaf-wise, `max_leaves` leaves: 31 by default, the depth
# bounded only by the leaf count).
def run_lightgbm(t):
    params = dict(objective="binary", learning_rate=p["learning_rate"], num_leaves=p["max_leaves"],
                  max_depth=-1, min_child_weight=p["min_leaf_weight"], lambda_l2=p["l2"],
                  bagging_fraction=p["subsample"], bagging_freq=1,
                  feature_fraction=p["colsample_bytree"], metric="binary_logloss",
                  num_threads=t, seed=seed, verbose=-1, deterministic=True)
    start = time.perf_counter()
    train = lgb.Dataset(X["train"], y["train"])
    valid = lgb.Dataset(X["validation"], y["validation"], reference=train)
    m = lgb.train(params, train, num_boost_round=1000, valid_sets=[valid],
                  callbacks=[lgb.early_stopping(40, verbose=False)])
    secs = time.perf_counter() - start
    return roc_auc_score(y["test"], m.predict(X["test"], num_iteration=m.best_iteration)), secs, m.best_iteration

def run_xgboost(t):
    # Leaf-wise ("lossguide") with the same leaf cap and no depth limit, like ours and LightGBM.
    params = dict(objective="binary:logistic", tree_method="hist", eta=p["learning_rate"],
                  grow_policy="lossguide", max_leaves=p["max_leaves"], max_depth=0, min_child_weight=p["min_leaf_weight"],
                  reg_lambda=p["l2"], subsample=p["subsample"],
                  colsample_bytree=p["colsample_bytree"], max_bin=p["nbins"],
                  eval_metric="logloss", nthread=t, seed=seed)
    start = time.perf_counter()
    train = xgb.DMatrix(X["train"], y["train"])
    valid = xgb.DMatrix(X["validation"], y["validation"])
    m = xgb.train(params, train, num_boost_round=1000, evals=[(valid, "v")],
                  early_stopping_rounds=40, verbose_eval=False)
    secs = time.perf_counter() - start
    pred = m.predict(xgb.DMatrix(X["test"]), iteration_range=(0, m.best_iteration + 1))
    return roc_auc_score(y["test"], pred), secs, m.best_iteration + 1

def ours(b, t, name):
    o, _ = train(b, t, 1, name)
    return o["metrics"]["test"]["roc_auc"], o["search_seconds"], o["params"]["trees"]

print(f"split: {export['train_rows']} train / {export['validation_rows']} validation / "
      f"{export['test_rows']} test rows, {len(export['features'])} features, seed {seed}")
print(f"{'threads':>7}  {'library':<22} {'test AUC':>9} {'fit s':>7} {'trees':>6}  "
      f"{'AUC - LightGBM':>14} {'time / LightGBM':>15}  load")
for t in threads:
    rows = [("health-predict", *ours(binary, t, "ours"), load())]
    if baseline:
        rows.append(("baseline build", *ours(baseline, t, "base"), load()))
    rows.append(("xgboost " + xgb.__version__, *run_xgboost(t), load()))
    rows.append(("lightgbm " + lgb.__version__, *run_lightgbm(t), load()))
    lg_auc, lg_secs = rows[-1][1], rows[-1][2]
    for name, auc, secs, trees, ld in rows:
        print(f"{t:>7}  {name:<22} {auc:9.4f} {secs:7.2f} {trees:6d}  "
              f"{auc - lg_auc:+14.4f} {secs / lg_secs:14.2f}x  {ld}", flush=True)

if search:
    print()
    print("search: whole `train` commands (load, encode, baseline, search, metrics, write), "
          "the same binary back to back")
    for t in threads:
        for name, b in [("health-predict", binary)] + ([("baseline build", baseline)] if baseline else []):
            one, one_wall = train(b, t, 1, name + "-s")
            ld1 = load()
            many, many_wall = train(b, t, 20, name + "-s")
            ld20 = load()
            print(f"{t:>7}  {name:<22} trials 1: {one_wall:6.2f} s (search {one['search_seconds']:.2f} s, "
                  f"test AUC {one['metrics']['test']['roc_auc']:.4f}; {ld1})")
            print(f"{'':>7}  {'':<22} trials 20: {many_wall:6.2f} s (search {many['search_seconds']:.2f} s, "
                  f"test AUC {many['metrics']['test']['roc_auc']:.4f}; {ld20})")
            print(f"{'':>7}  {'':<22} ratio 20/1: whole command {many_wall / one_wall:.2f}x, "
                  f"search {many['search_seconds'] / one['search_seconds']:.2f}x", flush=True)
PY
