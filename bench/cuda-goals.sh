#!/usr/bin/env bash
# The CUDA figures of docs/benchmarks.md in one go, on one NVIDIA GPU, every row from the same machine and sitting:
# falconq on cuda (decode loop, the default), the same engine one step per run (the KV cache through the host every
# step), webgpu, and Hugging Face transformers fp16 eager as the baseline a user already has. Random int4 weights of
# the Falcon-7B shape (speed and memory do not depend on the weights' values).
#
#   bash bench/cuda-goals.sh all                 # all of the below in one go, the goals first
#   bash bench/cuda-goals.sh goals [TUNING]      # the goal rows only: falconq, transformers, batch 1's profile, and the
#                                                # build with --graph-tuning TUNING (default grouped-top-k=0, the ArgMax)
#   bash bench/cuda-goals.sh engine  [BATCHES]   # falconq bench rows + the transformers baseline
#   bash bench/cuda-goals.sh service [SLOTS]     # the whole service (api + Redis + one worker) and the static batch
#   bash bench/cuda-goals.sh check               # generate on the 7B, cuda against cpu on a small model
#   bash bench/cuda-goals.sh profile [BATCH]     # where a decode-loop step's time goes (onnxruntime's profiler)
#   bash bench/cuda-goals.sh variant TUNING [BATCHES]  # static rows against a model built with --graph-tuning TUNING
#   bash bench/cuda-goals.sh dequantized [BATCHES]     # static rows (64,256), int4 kernels against --dequantize-weights, and
#                                                      # where a dequantized batch-256 step goes
#   bash bench/cuda-goals.sh mixed MIN...        # the mixed workload, continuous, at other --decode-chunk-min values
#   bash bench/cuda-goals.sh queue-fed           # the mixed workload fed like a queue worker, prefill warm-up on and off
#   bash bench/cuda-goals.sh queue-fed-with FLAGS...  # the same (default warm-up), once per set of bench flags, e.g.
#                                                # "" "--prefill-run-cost 1000000" "--decode-chunk-min 16"
#
# Needs the CUDA provider next to onnxruntime-node (falconq setup cuda) and dist/ (npm run build). JSON reports go
# to $OUT (default ./bench-out).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${OUT:-$root/bench-out}
mkdir -p "$out"
model=${MODEL:-/tmp/falconq-random-7b}
falconq() { node bin/falconq.js "$@"; }

ensure_model() {
  [ -f "$model/falconq.json" ] || falconq model random --shape falcon-7b --target gpu --out "$model" | tail -2
}

loop_rows() {
  echo "== cuda, decode loop (default)"
  timeout 240 node bin/falconq.js bench --model "$model" --ep cuda --batch "$1" --prompt-len 64 --new-tokens 128 --out "$out/cuda-loop.json"
}

hf_rows() {
  echo "== transformers fp16 eager"
  timeout 150 python3 bench/hf_baseline.py --batch 1,64,256 --prompt-len 64 --new-tokens 128 | tee "$out/hf.jsonl"
}

# What the defaults are measured against: the fpA_intB GEMM off, one step per run, webgpu.
baseline_rows() {
  echo "== cuda, decode loop, fpA_intB GEMM off (the default kernel at every batch size)"
  timeout 120 node bin/falconq.js bench --model "$model" --ep cuda --cuda-fpa-intb off --batch 64 --prompt-len 64 --new-tokens 128 --no-mixed --out "$out/cuda-loop-fpa-off.json"
  echo "== cuda, one step per run (--decode-chunk 1)"
  timeout 120 node bin/falconq.js bench --model "$model" --ep cuda --decode-chunk 1 --batch 1,64,256 --prompt-len 64 --new-tokens 128 --no-mixed --out "$out/cuda-step.json"
  echo "== webgpu"
  timeout 120 node bin/falconq.js bench --model "$model" --ep webgpu --batch 1,64,256 --prompt-len 64 --new-tokens 128 --no-mixed --out "$out/webgpu.json"
}

service_rows() {
  echo "== service, one worker, $1 slots"
  timeout 300 bash scripts/gpu-service-bench.sh run --model "$model" --gpus 0 --ep cuda --slots "$1" --prompts $(($1 * 4)) --new-tokens 128
}

# The decode loop built with other graph tuning (a baseline knob, e.g. grouped-top-k=0: one ArgMax and one
# vocabulary-wide TopK; loop-views=0: the fused projection and its Split in the loop), static batches.
variant_rows() {
  local tuning=$1 batches=${2:-1,256}
  local variant=/tmp/falconq-random-7b-variant
  rm -rf "$variant"
  falconq model random --shape falcon-7b --target gpu --graph-tuning "$tuning" --out "$variant" | tail -1
  echo "== cuda, decode loop built with --graph-tuning $tuning"
  timeout 150 node bin/falconq.js bench --model "$variant" --ep cuda --batch "$batches" --prompt-len 64 --new-tokens 128 --no-mixed --out "$out/cuda-loop-${tuning//[=,]/-}.json"
  rm -rf "$variant"
}

# This build's static rows against the same model built with TUNING, in one go.
variant() {
  local tuning=$1 batches=${2:-1,64,256}
  ensure_model
  echo "== cuda, decode loop (default), static batches"
  timeout 150 node bin/falconq.js bench --model "$model" --ep cuda --batch "$batches" --prompt-len 64 --new-tokens 128 --no-mixed --out "$out/cuda-loop-static.json"
  variant_rows "$tuning" "$batches"
}

# The rows a comparison needs come first (falconq's default, then transformers); the slower baselines last.
engine() {
  ensure_model
  loop_rows "${1:-1,8,64,256}"
  hf_rows
  baseline_rows
}

# The goals table's rows and what explains batch 1, in a few minutes (queue-fed, service and profile 256 apart).
goals() {
  ensure_model
  loop_rows 1,8,64,256
  hf_rows
  profile 1
  variant_rows "${1:-grouped-top-k=0}" 1,64,256
}

# Everything in one go, in the order of what a short time on the GPU must not lose: the goals first.
all() {
  goals
  service_rows 256
  check
  profile 256
  baseline_rows
}

service() {
  local slots=${1:-256}
  ensure_model
  echo "== engine, static batch $slots (same run)"
  timeout 150 node bin/falconq.js bench --model "$model" --ep cuda --batch "$slots" --prompt-len 64 --new-tokens 128 --no-mixed --out "$out/cuda-static-$slots.json"
  service_rows "$slots"
}

check() {
  ensure_model
  echo "== generate on the 7B (cuda)"
  timeout 120 node bin/falconq.js generate --model "$model" --ep cuda --max-new-tokens 32 --json "Question: What is a falcon?" "Answer:"
  echo "== cuda against cpu: the same small model (fp16 activations, accuracy level 0), greedy"
  local small=/tmp/falconq-random-small
  [ -f "$small/falconq.json" ] || falconq model random --shape small --target gpu --accuracy-level 0 --out "$small" | tail -1
  local prompts=("Question: What is a falcon?" "The quick brown fox" "1 2 3 4 5")
  timeout 120 node bin/falconq.js generate --model "$small" --ep cuda --max-new-tokens 256 --ignore-eos --json "${prompts[@]}" > "$out/agree-cuda.jsonl"
  timeout 240 node bin/falconq.js generate --model "$small" --ep cpu --max-new-tokens 256 --ignore-eos --json "${prompts[@]}" > "$out/agree-cpu.jsonl"
  node -e '
    const fs = require("fs");
    const read = (f) => fs.readFileSync(f, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const [a, b] = [read(process.argv[1]), read(process.argv[2])];
    a.forEach((row, i) => {
      const x = row.tokens, y = b[i].tokens;
      let same = 0; while (same < x.length && x[same] === y[same]) same++;
      console.log(JSON.stringify({ prompt: row.prompt, tokens: x.length, equalPrefix: same, identical: same === x.length && x.length === y.length }));
    });' "$out/agree-cuda.jsonl" "$out/agree-cpu.jsonl"
}

# Continuous batching on the mixed workload with other run lengths while rows may free (the default is 32).
mixed() {
  ensure_model
  for min in "$@"; do
    echo "== mixed workload, continuous, --decode-chunk-min $min"
    timeout 180 node bin/falconq.js bench --model "$model" --ep cuda --batch 256 --prompt-len 64 --new-tokens 128 --mixed-admission continuous --decode-chunk-min "$min" --out "$out/cuda-mixed-min$min.json"
  done
}

# The mixed workload as a queue worker feeds it (256 requests in flight, 1,024 in all), continuous against static,
# with the prefill warm-up at load (the default where the fpA_intB GEMM is on) and without it.
queue_fed() {
  ensure_model
  for warm in auto off; do
    echo "== mixed workload, queue-fed, --prefill-warm-up $warm"
    timeout 280 node bin/falconq.js bench --model "$model" --ep cuda --batch 256 --prompt-len 64 --new-tokens 128 --mixed-requests 1024 --mixed-in-flight 256 --prefill-warm-up "$warm" --out "$out/cuda-mixed-queue-warm-$warm.json"
  done
}

# The queue-fed mixed workload (default warm-up) once per set of extra bench flags ("" for the defaults).
queue_fed_with() {
  ensure_model
  local run=0
  for flags in "$@"; do
    run=$((run + 1))
    echo "== mixed workload, queue-fed, flags: ${flags:-(defaults)}"
    # shellcheck disable=SC2086 # each set of flags is split into words on purpose
    timeout 280 node bin/falconq.js bench --model "$model" --ep cuda --batch 256 --prompt-len 64 --new-tokens 128 --mixed-requests 1024 --mixed-in-flight 256 $flags --out "$out/cuda-mixed-queue-with-$run.json"
  done
}

# The decode loop over weights dequantized at load (fp16 GEMMs, ~14 GB of weights) against the int4 default,
# static batches in one go, then the GPU time per node of a dequantized batch-256 step.
dequantized() {
  local batches=${1:-1,64,256}
  ensure_model
  echo "== cuda, decode loop (default: int4 kernels), static batches"
  timeout 150 node bin/falconq.js bench --model "$model" --ep cuda --batch "$batches" --prompt-len 64 --new-tokens 128 --no-mixed --out "$out/cuda-loop-static.json"
  echo "== cuda, decode loop over weights dequantized at load (--dequantize-weights), static batches"
  timeout 300 node bin/falconq.js bench --model "$model" --ep cuda --dequantize-weights --batch "$batches" --prompt-len 64 --new-tokens 128 --no-mixed --out "$out/cuda-loop-dequantized.json"
  echo "== decode-loop profile, dequantized weights, batch 256, 16 steps, GPU time per node (CUDA_LAUNCH_BLOCKING=1)"
  CUDA_LAUNCH_BLOCKING=1 timeout 150 node bench/profile-decode-loop.js "$model" cuda 256 16 64 dequantized
}

# Host time per node (what launching a step costs the CPU), then with CUDA_LAUNCH_BLOCKING=1 (each node's host time
# is then its GPU time): a step far longer than its GPU time is bound by the host.
profile() {
  local batch=${1:-256}
  ensure_model
  echo "== decode-loop profile, batch $batch, 16 steps, host time per node"
  timeout 120 node bench/profile-decode-loop.js "$model" cuda "$batch" 16 64
  echo "== decode-loop profile, batch $batch, 16 steps, GPU time per node (CUDA_LAUNCH_BLOCKING=1)"
  CUDA_LAUNCH_BLOCKING=1 timeout 120 node bench/profile-decode-loop.js "$model" cuda "$batch" 16 64
}

case "${1:-}" in
  engine) shift; engine "$@" ;;
  all) shift; all ;;
  goals) shift; goals "$@" ;;
  variant) shift; variant "$@" ;;
  dequantized) shift; dequantized "$@" ;;
  service) shift; service "$@" ;;
  check) shift; check "$@" ;;
  profile) shift; profile "$@" ;;
  mixed) shift; mixed "$@" ;;
  queue-fed) shift; queue_fed ;;
  queue-fed-with) shift; queue_fed_with "$@" ;;
  *) echo "usage: $0 all | goals [TUNING] | variant TUNING [BATCHES] | dequantized [BATCHES] | engine [BATCHES] | service [SLOTS] | check | profile [BATCH] | mixed MIN... | queue-fed | queue-fed-with FLAGS..." >&2; exit 2 ;;
esac
