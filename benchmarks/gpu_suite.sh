#!/usr/bin/env bash
# The full-scale GPU suite: one prepared script for a lent GPU machine (about 8 minutes on one GPU).
# Generates a 2,388-SKU stand-in on the device, then prints training images/s (fp32, bf16,
# bf16 + compile) with the implied Table 5 hours, loader vs consumption, PGD-20 and AutoAttack
# evaluation speed and the fp32-overturn count (benchmarks/gpu_suite.py); with several GPUs, the
# training speed-up of torchrun over one process.
# Usage (repository root): bash benchmarks/gpu_suite.sh   [SUITE_IMAGES=40000]
set -u
if ls .whl/*.whl >/dev/null 2>&1; then  # wheels carried to a bare machine (see the device tool's notes)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export ADVRP2K_HOME=${ADVRP2K_HOME:-/tmp/advrp2k-home} ADVRP2K_NO_PROGRESS=1 PYTHONUNBUFFERED=1
ROOT=${SUITE_ROOT:-/tmp/rp2k-standin}
echo "== stand-in: 2388 SKUs, ${SUITE_IMAGES:-40000} images at 224 px"
timeout 150 python3 -m advrp2k data synth "$ROOT" --skus 2388 --images "${SUITE_IMAGES:-40000}" --size 224 || true
timeout 330 python3 benchmarks/gpu_suite.py --root "$ROOT"
GPUS=$(python3 -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -gt 1 ]; then
  echo "== torchrun scaling: 1 vs $GPUS GPUs, standard training, 1 epoch of the stand-in at 224 px"
  for N in 1 "$GPUS"; do
    rm -rf "$ADVRP2K_HOME/models"
    /usr/bin/time -f "$N GPU(s): wall %e s" timeout 120 torchrun --standalone --nproc-per-node "$N" -m advrp2k train \
      --defense standard --data "$ROOT" --protocol paper --epochs 1 2>&1 | tail -1
  done
else
  echo "== torchrun scaling: this machine has $GPUS GPU; the 1 vs all GPUs figure needs several"
fi
