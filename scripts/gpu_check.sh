#!/usr/bin/env bash
# One prepared GPU check (one GPU, < 8 minutes on an H100/H200), printing a summary table:
#   1. bench_speed ratios (suite vs plain PyTorch, old vs new path): ResNet-18, batch 512, bf16-mixed
#   2. images/s of one CIFAR-10-sized epoch (50,000 synthetic 32x32 images) through the unlearning loop
#   3. a 10-epoch reference model (RecipeTraining) on that data
#   4. the no-sync tests (torch.cuda.set_sync_debug_mode("error") on every step)
#   5. a one-cell CIFAR-10-sized run of `python -m benchmark run` (synthetic dataset, finetune)
# --dry-run runs the same steps on the CPU with tiny sizes (used by tests/test_fastpath.py).
# Results go to $GPU_CHECK_OUT (default: $OUT if set, else a temporary folder).
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
PY=${PYTHON:-python}
[[ -x .venv/bin/python && -z "${PYTHON:-}" ]] && PY=.venv/bin/python
WORK=${GPU_CHECK_OUT:-${OUT:-$(mktemp -d)}}
mkdir -p "$WORK/pkg" "$WORK/configs/dataset"
SUMMARY="$WORK/summary.tsv"
: > "$SUMMARY"
if (( DRY )); then
  DEV=cpu; ACC=cpu; PREC=32-true; MODEL=cnn32; BATCH=16; STEPS=4; N=256; NTEST=64; EPOCHS=1; REPEATS=1
  BENCH_MODEL=digits_mlp
else
  DEV=cuda; ACC=gpu; PREC=bf16-mixed; MODEL=resnet18; BATCH=512; STEPS=60; N=50000; NTEST=10000; EPOCHS=10
  REPEATS=3; BENCH_MODEL=resnet18
fi
export N NTEST WORK
row() { printf '%s\t%s\n' "$1" "$2" >> "$SUMMARY"; }
timed() {  # timed NAME CMD...: runs CMD, records its wall seconds and status
  local name=$1; shift
  local t0=$SECONDS status=ok
  "$@" > "$WORK/$name.log" 2>&1 || status="FAILED (see $WORK/$name.log)"
  row "$name" "$status, $((SECONDS - t0)) s"
  tail -n 15 "$WORK/$name.log"
}

# a synthetic CIFAR-10-sized dataset, registered from an imported module
cat > "$WORK/pkg/gpu_check_data.py" <<'PYEOF'
import os

import torch

from benchmark.data.image_data import DATASETS, ImageData


@DATASETS.register("synthetic_cifar")
def synthetic_cifar(root, download, cache_dir):
    n, m = int(os.environ["N"]), int(os.environ["NTEST"])
    g = torch.Generator().manual_seed(0)
    y, ty = torch.randint(0, 10, (n,), generator=g), torch.randint(0, 10, (m,), generator=g)
    base = torch.randint(0, 256, (10, 3, 32, 32), generator=g, dtype=torch.uint8)  # one pattern per class
    def images(labels):
        noise = torch.randint(0, 64, (len(labels), 3, 32, 32), generator=g, dtype=torch.uint8)
        return base[labels] // 2 + noise
    return ImageData("synthetic_cifar", images(y), y, images(ty), ty, [str(i) for i in range(10)],
                     (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
PYEOF
cat > "$WORK/configs/dataset/synthetic_cifar.yaml" <<YEOF
name: synthetic_cifar
num_classes: 10
root: null
download: false
model: $MODEL
train_subset: null
split_seed: 0
augment: {crop_pad: 4, flip: true}
recipe: {epochs: $EPOCHS, lr: 0.1, batch_size: $BATCH, momentum: 0.9, weight_decay: 5.0e-4}
YEOF
export PYTHONPATH="$WORK/pkg:$PWD${PYTHONPATH:+:$PYTHONPATH}"

echo "== 1. loop ratios ($BENCH_MODEL, batch $BATCH, $PREC, $DEV)"
timed bench_speed "$PY" scripts/bench_speed.py --model "$BENCH_MODEL" --batch "$BATCH" --steps "$STEPS" \
  --device "$DEV" --precision "$PREC" --repeats "$REPEATS" --threads 0
grep -E "^(unlearn|attack|eval) " "$WORK/bench_speed.log" | while read -r loop variant rest; do
  row "ratio $loop" "$variant $rest"; done || true

echo "== 2-3. one epoch (images/s) and a $EPOCHS-epoch reference model"
timed epoch_and_reference "$PY" - "$DEV" "$ACC" "$PREC" "$MODEL" "$BATCH" "$EPOCHS" <<'PYEOF'
import sys, time, os
import torch
import gpu_check_data
from benchmark.data.image_data import DATASETS
from benchmark.models import build_model
from benchmark.module import UnlearnData
from benchmark.reference import RecipeTraining
from benchmark.data.transforms import BatchTransform
from benchmark.training import fit
dev, acc, prec, model, batch, epochs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
ds = DATASETS.get("synthetic_cifar")(None, False, None)
tf = BatchTransform(ds.mean, ds.std, 4, True)
idx = torch.arange(len(ds.train_y))
data = UnlearnData(ds.train_x, ds.train_y, idx[:0], idx, tf, 10)
tc = {"accelerator": acc, "devices": 1, "precision": prec, "channels_last": acc == "gpu"}
for e in (1, epochs):
    torch.manual_seed(0)
    m = RecipeTraining(build_model(model, 10, 3), data, epochs=e, batch_size=batch, lr=0.1)
    t0 = time.perf_counter()
    fit(m, tc)
    wall = time.perf_counter() - t0
    print(f"RESULT {e}-epoch fit: {wall:.1f} s wall, {e * len(idx) / wall:.0f} images/s")
PYEOF
grep "^RESULT" "$WORK/epoch_and_reference.log" | while read -r _ what; do row "training" "$what"; done || true

echo "== 4. no host sync per step"
timed no_sync "$PY" -m pytest -q -p no:cacheprovider tests/test_fastpath.py -k "sync or host_read" -rs

echo "== 5. one CIFAR-10-sized cell"
CELL_ARGS=(dataset=synthetic_cifar "imports=[gpu_check_data]" "config_path=[$WORK/configs]" "methods=[finetune]"
  "output_dir=$WORK/run" "cache_dir=$WORK/cache" logger=none "trainer.accelerator=$ACC" "trainer.precision=$PREC"
  "method_defaults.batch_size=$BATCH")
(( DRY )) && CELL_ARGS+=(method_args.finetune.epochs=1 attack.max_steps=4)
timed one_cell "$PY" -m benchmark run "${CELL_ARGS[@]}"
grep -E "^\[(estimate|ref|attack|1/1)\]" "$WORK/one_cell.log" | while read -r line; do row "cell" "$line"; done || true

echo
echo "== summary ($([[ $DRY == 1 ]] && echo dry run on the CPU || echo GPU))"
column -t -s $'\t' "$SUMMARY" 2>/dev/null || cat "$SUMMARY"
! grep -q FAILED "$SUMMARY"
