#!/usr/bin/env bash
# Every GPU row of issue 15 in one go (budget: 8 minutes on one H100/H200), JSON + a markdown table.
#
#   bash scripts/gpu_check.sh [OUT_DIR]          # default OUT_DIR: gpu_check/<date-time>
#
# Rows: training pipeline vs model-only ceiling (ResNet-18 width 64 on WCTE and HK, fp32 and
# bf16-mixed + channels_last; EdgeConv GNN on WCTE), representation building (images, kNN, points),
# HK/WCTE inference fp32/bf16 (scripts/bench_inference.py), kNN by event size and the tracking graph
# stages at 100k hits (suites=[graphs] ... on the GPU through scripts/bench_tracking.py --device cuda).
# The peer suite (WatChMaL's datasets, DataLoader and ResNet-18 next to recoml on the same files, with
# the GPU training rows for WCTE and HK) needs PEER_WATCHMAL=DIR, a WatChMaL checkout (the directory
# holding its `watchmal` package, e.g. `git clone https://github.com/WatChMaL/WatChMaL`); the check
# refuses to start without it (PEER_WATCHMAL=skip runs the other rows only, and says so).
# Fails at once, in one sentence, without a CUDA device. Each step has its own time limit (together
# 475 s, inside the 8-minute budget) so one slow step cannot eat it; a step that fails or runs past its
# limit is reported with the end of its log, marked FAILED in gpu_check.md, the others still run, and
# the script exits 1.
#
#   GPU_CHECK_REHEARSAL=1 bash scripts/gpu_check.sh OUT   # every step on the CPU at tiny sizes (~3.5 min, 2 cores)
#
# The rehearsal checks, without a GPU, that every step's command still runs and the summary is written,
# so a lent GPU's minutes are not lost to a renamed option; it measures nothing (its machine line says
# "CPU rehearsal") and does not exercise the CUDA-only code paths.
set -u -o pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
OUT="${1:-gpu_check/$(date +%Y%m%d-%H%M%S)}"

if [ -n "${GPU_CHECK_REHEARSAL:-}" ]; then
  DEVICE=cpu LIMIT_SCALE=3 STEPS=2 BATCH=2 ITER=2 SECONDS_EACH=0.05 PARTICLES=300 REPEAT=1 PEER_STEPS=2 PEER_REPEATS=1
  PEER_BATCHES='{wcte: 2, hk: 1}' PEER_EVENTS='{wcte: 1024, hk: 256}'
elif ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: no CUDA device is visible to torch ($("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo 'torch not importable')); run it on a GPU machine" >&2
  exit 2
else
  DEVICE=cuda LIMIT_SCALE=1 STEPS=20 BATCH=256 ITER=20 SECONDS_EACH=2 PARTICLES=10000 REPEAT=3 PEER_STEPS=8 PEER_REPEATS=3
  PEER_BATCHES='{wcte: 12, hk: 6}' PEER_EVENTS='{wcte: 16384, hk: 2048}'
fi
PEER="${PEER_WATCHMAL:-}"
if [ -z "$PEER" ]; then
  echo "gpu_check: set PEER_WATCHMAL=DIR (a WatChMaL checkout holding the watchmal package) for the peer rows, or PEER_WATCHMAL=skip to run without them" >&2
  exit 2
fi
if [ "$PEER" != skip ] && [ ! -d "$PEER/watchmal" ]; then
  echo "gpu_check: PEER_WATCHMAL=$PEER holds no watchmal package (expected $PEER/watchmal)" >&2
  exit 2
fi
mkdir -p "$OUT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
status=0

step() {  # step NAME SECONDS CMD...: run with a time limit (x3 in a rehearsal), log to OUT/NAME.log
  local name=$1 limit=$(($2 * LIMIT_SCALE))
  shift 2
  local t0=$SECONDS
  if timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; then
    echo "{\"step\": \"$name\", \"ok\": true, \"seconds\": $((SECONDS - t0))}" >>"$OUT/steps.jsonl"
  else
    echo "{\"step\": \"$name\", \"ok\": false, \"seconds\": $((SECONDS - t0))}" >>"$OUT/steps.jsonl"
    echo "gpu_check: step $name FAILED or ran past ${limit}s; the end of $OUT/$name.log:" >&2
    tail -n 20 "$OUT/$name.log" | sed 's/^/    /' >&2
    status=1
  fi
}

BENCH=("$PY" -m recoml.bench "device=$DEVICE" threads=4)
step train_fp32 90 "${BENCH[@]}" 'suites=[train]' 'detectors=[wcte,hk]' 'train.models=[resnet18,gnn]' \
  "train.batch_size=$BATCH" "train.n_steps=$STEPS" train.precision=32-true "hydra.run.dir=$OUT/train_fp32"
step train_bf16 70 "${BENCH[@]}" 'suites=[train]' 'detectors=[wcte,hk]' 'train.models=[resnet18]' \
  "train.batch_size=$BATCH" "train.n_steps=$STEPS" train.precision=bf16-mixed "hydra.run.dir=$OUT/train_bf16"
step representations 45 "${BENCH[@]}" 'suites=[images,knn,points]' 'detectors=[wcte,hk]' \
  "representations.n_iter=$ITER" "hydra.run.dir=$OUT/representations"
step inference 75 "$PY" scripts/bench_inference.py --threads 4 --seconds "$SECONDS_EACH" --output "$OUT/inference.json"
step tracking 75 "$PY" scripts/bench_tracking.py --device "$DEVICE" --embedding --repeat "$REPEAT" \
  --particles "$PARTICLES"
if [ "$PEER" != skip ]; then
  # Batch rows on the CPU side as on the dev box; training rows on the GPU with 2 workers each side.
  step peer 120 "${BENCH[@]}" 'suites=[peer]' "bench.peer.watchmal=$PEER" \
    'bench.peer.cases=[wcte_batches_0w,wcte_batches_2w,hk_batches_0w,hk_batches_2w,wcte_train_w64,hk_train_w64]' \
    bench.peer.train.workers=2 "bench.peer.train.batch_size=$BATCH" "bench.peer.train.n_steps=$PEER_STEPS" \
    "bench.peer.repeats=$PEER_REPEATS" "bench.peer.n_batches=$PEER_BATCHES" "bench.peer.n_events=$PEER_EVENTS" \
    "hydra.run.dir=$OUT/peer"
else
  echo "gpu_check: PEER_WATCHMAL=skip: no peer rows (WatChMaL ratios) in this check" >&2
  echo '{"step": "peer", "ok": false, "seconds": 0, "skipped": true}' >>"$OUT/steps.jsonl"
  status=1
fi

# One JSON and one markdown table from the bench.json files and the logs.
if "$PY" - "$OUT" <<'PYEOF'
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
device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU rehearsal, nothing measured"
summary = {"machine": f"{platform.node()}, {device}", "steps": steps, "rows": rows}
(out / "gpu_check.json").write_text(json.dumps(summary, indent=1))
failed = [s["step"] for s in steps if not s["ok"] and not s.get("skipped")]
skipped = [s["step"] for s in steps if s.get("skipped")]
lines = [f"GPU check on {summary['machine']}", ""]
if failed:
    lines += [f"**FAILED steps: {', '.join(failed)}** (their rows are missing; see <step>.log)", ""]
if skipped:
    lines += [f"**Skipped steps: {', '.join(skipped)}** (PEER_WATCHMAL=skip: no WatChMaL ratios)", ""]
lines += ["| step | suite | case | events/s | ceiling events/s |", "|---|---|---|---|---|"]
for r in rows:
    if "events_per_s" in r and r.get("suite") != "peer":
        ceiling = f"{r['ceiling_events_per_s']:,.0f}" if "ceiling_events_per_s" in r else ""
        lines.append(f"| {r['step']} | {r['suite']} | {r['case']} | {r['events_per_s']:,.0f} | {ceiling} |")
peer = out / "peer" / "peer.json"
if peer.exists():
    cases = {k: v for k, v in json.loads(peer.read_text()).items() if k != "meta"}
    lines += ["", "| peer case | device | WatChMaL ev/s | recoml ev/s | ratio (wall) | ratio (per CPU-s) |", "|---|---|---|---|---|---|"]
    for case, r in cases.items():
        lines.append(
            f"| {case} | {r.get('device', 'cpu')} | {r['watchmal']['events_per_s']:,.0f} | {r['recoml']['events_per_s']:,.0f} "
            f"| {r['ratio']['events_per_s']:.2f}x | {r['ratio']['events_per_cpu_s']:.2f}x |"
        )
lines += ["", "Inference and tracking rows: inference.json, tracking.log; steps: steps.jsonl."]
(out / "gpu_check.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PYEOF
then
  :
else
  echo "gpu_check: the summary (gpu_check.json, gpu_check.md) could not be written" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "gpu_check: FAILED: some rows are missing (see the messages above and $OUT/steps.jsonl)" >&2
else
  echo "gpu_check: results in $OUT (gpu_check.json, gpu_check.md)"
fi
exit $status
