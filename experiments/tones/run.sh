#!/usr/bin/env bash
# The tones study (experiments/tones/README.md), from scratch, on a 2-core CPU:
#   1. one base model (tones_study_pretrain, seed 0);
#   2. from it, ARC (tones_study_arc) and its two ablations (tones_study_arc_no_contrastive, tones_study_arc_lsgan),
#      each with training seeds 0, 1, 2;
#   3. one arc-eval run (probe metric set) per replicate r = 0, 1, 2: every system on the same prompts and sampling
#      seeds (arc-eval seed=r, 24 captions x 4 renderings); the ARC systems from training seed r;
#   4. arc-replicates: mean and 95 % interval over the replicates per system, table and plots; claims.py: the
#      paper's claims checked against those intervals; by_caption.py: accuracy on periodic and on noise captions.
# usage: bash experiments/tones/run.sh [OUT]   (default outputs/tones_study). Rerunning into OUT resumes: finished
# trainings (OUT/train/<run>/.done) and generated clips are kept, an unfinished training starts over.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-outputs/tones_study}
BIN=${BIN:-.venv/bin}
CONF=experiments/tones/conf
SEEDS=(0 1 2)
PROMPTS=24
RENDERINGS=4
mkdir -p "$OUT"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/timings.txt"; }

train() {  # train NAME EXPERIMENT SEED [overrides...]
  local dir=$OUT/train/$1 experiment=$2 seed=$3
  shift 3
  if [ -f "$dir/.done" ]; then log "train $(basename "$dir"): done before"; return; fi
  rm -rf "$dir"
  local start=$SECONDS
  "$BIN/arc-train" --config-dir "$CONF" experiment="$experiment" seed="$seed" hydra.run.dir="$dir" "$@"
  touch "$dir/.done"
  log "train $(basename "$dir"): $((SECONDS - start)) s"
}

system() {  # system NAME CHECKPOINT SAMPLER STEPS CFG -> arc-eval overrides
  echo "+systems.$1.checkpoint=$2 +systems.$1.sampler=$3 +systems.$1.steps=$4 +systems.$1.cfg_scale=$5"
}

log "study into $OUT"
train base tones_study_pretrain 0
BASE=$OUT/train/base/checkpoints/last.ckpt
for seed in "${SEEDS[@]}"; do
  for variant in arc arc_no_contrastive arc_lsgan; do
    train "$variant-s$seed" "tones_study_$variant" "$seed" pretrained="$BASE"
  done
done

results=() items=()
for r in "${SEEDS[@]}"; do
  ckpt() { echo "$OUT/train/$1-s$r/checkpoints/last.ckpt"; }
  start=$SECONDS
  # shellcheck disable=SC2046  # each system's overrides are separate words
  "$BIN/arc-eval" metrics=probes seed="$r" prompts=$PROMPTS renderings=$RENDERINGS hydra.run.dir="$OUT/eval/rep$r" \
    $(system base-euler50-cfg1p5 "$BASE" euler 50 1.5) \
    $(system base-euler8-cfg1p5 "$BASE" euler 8 1.5) \
    $(system base-pingpong8 "$BASE" pingpong 8 1) \
    $(system arc-pingpong1 "$(ckpt arc)" pingpong 1 1) \
    $(system arc-pingpong2 "$(ckpt arc)" pingpong 2 1) \
    $(system arc-pingpong4 "$(ckpt arc)" pingpong 4 1) \
    $(system arc-pingpong8 "$(ckpt arc)" pingpong 8 1) \
    $(system arc-no-contrastive-pingpong8 "$(ckpt arc_no_contrastive)" pingpong 8 1) \
    $(system arc-lsgan-pingpong8 "$(ckpt arc_lsgan)" pingpong 8 1)
  log "eval rep$r: $((SECONDS - start)) s"
  results+=("$OUT/eval/rep$r/results.json") items+=("$OUT/eval/rep$r/items.csv")
done

"$BIN/arc-replicates" "${results[@]}" --out "$OUT/summary"
"$BIN/python" experiments/tones/claims.py "$OUT/summary/summary.json" | tee "$OUT/summary/claims.md"
"$BIN/python" experiments/tones/by_caption.py "${items[@]}" | tee "$OUT/summary/by_caption.md"
log "study done: $SECONDS s"
