#!/usr/bin/env bash
# Every GPU row of issue 15 in one go (budget: 8 minutes on one H100/H200), JSON + a markdown table.
#
#   bash scripts/gpu_check.sh [OUT_DIR]          # default OUT_DIR: gpu_check/<date-time>
#
# Rows: training pipeline vs model-only ceiling (ResNet-18 width 64 on WCTE and HK, fp32 and
# bf16-mixed + channels_last; EdgeConv GNN on WCTE), representation building (images, kNN, points),
# HK/WCTE inference fp32/bf16 (scripts/bench_inference.py), kNN by event size and the tracking graph
# stages at 100k hits (suites=[graphs] ... on the GPU through scripts/bench_tracking.py --device cuda).
# The peer suite (WatChMaL next to recoml) runs when PEER_WATCHMAL=DIR names a WatChMaL checkout.
# Fails at once, in one sentence, without a CUDA device. Each step has its own time limit so one slow
# step cannot eat the budget; a step that fails is reported and the others still run.
set -u -o pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
OUT="${1:-gpu_check/$(date +%Y%m%d-%H%M%S)}"

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: no CUDA device is visible to torch ($("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo 'torch not importable')); run it on a GPU machine" >&2
  exit 2
fi
mkdir -p "$OUT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
status=0

step() {  # step NAME SECONDS CMD...: run with a time limit, log to OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  if timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; then
    echo "{\"step\": \"$name\", \"ok\": true, \"seconds\": $((SECONDS - t0))}" >>"$OUT/steps.jsonl"
  else
    echo "{\"step\": \"$name\", \"ok\": false, \"seconds\": $((SECONDS - t0))}" >>"$OUT/steps.jsonl"
    echo "gpu_check: step $name failed or ran past ${limit}s (see $OUT/$name.log)" >&2
    status=1
  fi
}

BENCH=("$PY" -m recoml.bench device=cuda threads=4)
step train_fp32 100 "${BENCH[@]}" 'suites=[train]' 'detectors=[wcte,hk]' 'train.models=[resnet18,gnn]' \
  train.batch_size=256 train.n_steps=20 train.precision=32-true "hydra.run.dir=$OUT/train_fp32"
step train_bf16 100 "${BENCH[@]}" 'suites=[train]' 'detectors=[wcte,hk]' 'train.models=[resnet18]' \
  train.batch_size=256 train.n_steps=20 train.precision=bf16-mixed "hydra.run.dir=$OUT/train_bf16"
step representations 60 "${BENCH[@]}" 'suites=[images,knn,points]' 'detectors=[wcte,hk]' \
  representations.n_iter=20 "hydra.run.dir=$OUT/representations"
step inference 90 "$PY" scripts/bench_inference.py --threads 4 --seconds 2 --output "$OUT/inference.json"
step tracking 90 "$PY" scripts/bench_tracking.py --device cuda --embedding --repeat 3
if [ -n "${PEER_WATCHMAL:-}" ]; then
  step peer 120 "${BENCH[@]}" 'suites=[peer]' "bench.peer.watchmal=$PEER_WATCHMAL" "hydra.run.dir=$OUT/peer"
fi

# One JSON and one markdown table from the bench.json files and the logs.
"$PY" - "$OUT" <<'PYEOF'
import json, pathlib, platform, sys
import torch
out = pathlib.Path(sys.argv[1])
rows = []
for f in sorted(out.glob("*/bench.json")):
    for r in json.loads(f.read_text())["results"]:
        rows.append({"step": f.parent.name, **r})
if (out / "inference.json").exists():
    rows.append({"step": "inference", "results": json.loads((out / "inference.json").read_text())})
steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
summary = {"machine": f"{platform.node()}, {torch.cuda.get_device_name()}", "steps": steps, "rows": rows}
(out / "gpu_check.json").write_text(json.dumps(summary, indent=1))
lines = [f"GPU check on {summary['machine']}", "", "| step | suite | case | events/s | ceiling events/s |", "|---|---|---|---|---|"]
for r in rows:
    if "events_per_s" in r:
        ceiling = f"{r['ceiling_events_per_s']:,.0f}" if "ceiling_events_per_s" in r else ""
        lines.append(f"| {r['step']} | {r['suite']} | {r['case']} | {r['events_per_s']:,.0f} | {ceiling} |")
lines += ["", "Inference and tracking rows: inference.json, tracking.log; steps: steps.jsonl."]
(out / "gpu_check.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PYEOF
echo "gpu_check: results in $OUT (gpu_check.json, gpu_check.md)"
exit $status
