#!/usr/bin/env bash
# Service throughput on a GPU box: a Redis, the api and `falconq worker --gpus ...` on one machine, then a batch
# through the api (scripts/bench-service.js), printing items/s and tokens/s. For the 2-GPU scaling figure run it with
# --gpus 0 and with --gpus 0,1.
#
#   here:   npm run build && ../shared/gpu/prepare.sh && scripts/gpu-service-bench.sh pack
#           (adds Debian's redis-server packages to .device/redis-debs: the GPU machine has no Redis)
#   there:  bash .device/gpu-env.sh bash scripts/gpu-service-bench.sh run --model <dir> --gpus 0,1 --ep webgpu \
#                --slots 64 --prompts 2000 --new-tokens 64
#   (carry .device and dist; build the model there first, e.g. node bin/falconq.js model random --out /tmp/m)
#
# With --ep webgpu each worker is pinned by hiding the other GPUs (docs/deploy.md); the script prints nvidia-smi's
# memory per GPU after the run to confirm both GPUs were used.
# Writes service-bench-<gpus>.json to $OUT when set (the device tool's output folder), else to the current folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

pack() {
  mkdir -p .device/redis-debs
  lists=$(mktemp -d); mkdir -p "$lists/partial"
  o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$lists"
  apt-get $o update >/dev/null 2>&1
  (cd .device/redis-debs && apt-get $o download redis-server redis-tools liblzf1 libjemalloc2 2>&1 | grep -v -i -E "unsandboxed|^W:|^Get:|^Fetched" || true)
  ls -la .device/redis-debs
}

run() {
  local model="" gpus="0" per_gpu="1" ep="webgpu" slots="64" prompts="2000" new_tokens="64"
  while [ $# -gt 0 ]; do
    case "$1" in
      --model) model=$2; shift 2 ;;
      --gpus) gpus=$2; shift 2 ;;
      --per-gpu) per_gpu=$2; shift 2 ;;
      --ep) ep=$2; shift 2 ;;
      --slots) slots=$2; shift 2 ;;
      --prompts) prompts=$2; shift 2 ;;
      --new-tokens) new_tokens=$2; shift 2 ;;
      *) echo "gpu-service-bench: unknown option $1" >&2; exit 2 ;;
    esac
  done
  [ -n "$model" ] || { echo "gpu-service-bench: --model <dir> is required" >&2; exit 2; }

  if ! command -v redis-server >/dev/null 2>&1; then
    [ -d .device/redis-debs ] || { echo "no redis-server here and no .device/redis-debs (run 'scripts/gpu-service-bench.sh pack' before carrying .device)" >&2; exit 1; }
    mkdir -p /tmp/redis-root
    for f in .device/redis-debs/*.deb; do dpkg -x "$f" /tmp/redis-root; done
    export PATH=/tmp/redis-root/usr/bin:$PATH
    export LD_LIBRARY_PATH=/tmp/redis-root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  fi

  # Globals, not locals: the EXIT trap runs after run() has returned.
  work=$(mktemp -d)
  redis_port=6399 api_port=3100
  pids=()
  cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
  }
  trap cleanup EXIT

  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --maxmemory-policy noeviction \
    --daemonize yes --dir "$work" --logfile "$work/redis.log"
  export REDIS_URL="redis://127.0.0.1:$redis_port" MODEL_DIR="$model" FALCONQ_REDIS_PREFIX=bench NO_COLOR=1
  PORT=$api_port HOST=127.0.0.1 FALCONQ_RATE_LIMIT_PER_MINUTE=0 node dist/apps/api/src/main.js > "$work/api.log" 2>&1 &
  pids+=($!)
  node bin/falconq.js worker --gpus "$gpus" --per-gpu "$per_gpu" --ep "$ep" --slots "$slots" > "$work/workers.log" 2>&1 &
  pids+=($!)

  local expected; expected=$(( $(echo "$gpus" | tr ',' '\n' | wc -l) * per_gpu ))
  local api="http://127.0.0.1:$api_port"
  for _ in $(seq 1 600); do
    alive=$( (curl -s "$api/health" || true) | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{console.log(JSON.parse(s).workers?.alive??0)}catch{console.log(0)}})' || true)
    [ "$alive" -ge "$expected" ] && break
    sleep 1
  done
  [ "${alive:-0}" -ge "$expected" ] || { echo "only ${alive:-0}/$expected workers came up:"; tail -50 "$work/workers.log"; exit 1; }
  echo "gpu-service-bench: $expected worker(s) on $ep devices $gpus, $slots slots each"

  node scripts/bench-service.js --api "$api" --prompts "$slots" --new-tokens 8 > /dev/null   # warm-up
  local out="${OUT:-.}/service-bench-gpus${gpus//,/-}.json"
  # The workers' heartbeat figures every 5 s while the batch runs: how full each batch is (tokens per decode
  # step), the step time, and the share of time spent in prefill runs (joins).
  (while sleep 5; do curl -s "$api/metrics" | grep -E '^falconq_worker_(tokens_per_second|rows_per_decode_step|decode_ms_per_step|prefill_share)' | tr '\n' ' '; echo; done) > "$work/occupancy.log" 2>/dev/null &
  local sampler=$!
  node scripts/bench-service.js --api "$api" --prompts "$prompts" --new-tokens "$new_tokens" --json | tee "$out"
  kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
  echo "worker figures every 5 s during the run:"; sed -E 's/falconq_worker_//g; s/\{worker="[^"]*"\}//g' "$work/occupancy.log"
  grep -E "ready|loaded|warn|error" "$work/workers.log" | tail -20 || true
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=index,memory.used,utilization.gpu --format=csv || true
}

case "${1:-}" in
  pack) pack ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 pack | run --model DIR [--gpus 0,1] [--per-gpu 1] [--ep webgpu] [--slots 64] [--prompts 2000] [--new-tokens 64]" >&2; exit 2 ;;
esac
