#!/usr/bin/env bash
# One prepared script for a lent GPU machine: install carried wheels, run the gpu tests, time the
# headline command on CUDA, measure the paper protocol's training throughput, run the speed benchmark.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site ADVRP2K_HOME=/tmp/advrp2k-home ADVRP2K_NO_PROGRESS=1 PYTHONUNBUFFERED=1
cd /tmp && python3 -c "import advrp2k, torch; print('advrp2k', advrp2k.__version__, 'torch', torch.__version__, torch.cuda.get_device_name())"
cd - >/dev/null
echo "== gpu tests"; (cd tests && timeout 150 python3 -m pytest -q -m gpu -p no:cacheprovider test_gpu.py 2>&1 | tail -4)
echo "== headline on cuda, cold"; cd /tmp
/usr/bin/time -f "wall %e s" timeout 200 python3 -c "from advrp2k.cli import main; main()" eval --defense madry --eps 8/255 --device cuda --leaderboard /tmp/lb 2>&1 | tail -12
echo "== headline on cuda, cached"
/usr/bin/time -f "wall %e s" timeout 60 python3 -c "from advrp2k.cli import main; main()" eval --defense madry --eps 8/255 --device cuda --leaderboard /tmp/lb 2>&1 | tail -2
cd - >/dev/null
echo "== paper-protocol throughput"; timeout 150 python3 benchmarks/gpu_train_cost.py --steps 8 2>&1 | tail -5
