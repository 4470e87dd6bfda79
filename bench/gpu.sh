#!/bin/bash
# The device check, for a session lent a GPU machine (no network there; python3 holds a CUDA torch):
# the GPU tests, a short autopilot session, the trainer's speed (bench/speed.py), then the autopilot
# against the strongest simple baseline at 30 s, 60 s and 2 min.
#
# Prepare here, once (both folders are ignored by git: list them in .git/info/exclude):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl pydantic pydantic_core annotated-types typing-inspection \
#     typing_extensions optuna alembic SQLAlchemy colorlog Mako mnist1d     (the versions .venv holds)
#   mkdir -p .devdata/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz .devdata/fashion-mnist/
# Then run it there with carry [".whl", ".devdata"]: bash bench/gpu.sh  (TEST_S, BENCH_S, ROWS, SCALE)
# Measured 2026-11-26 on an H200: the tests take ~45 s, a session ~its budget + 2 s.
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD COACH_DATA_DIR=$PWD/.devdata MPLBACKEND=Agg
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/gpu.txt
python3 -c "import coach, torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))" 2>&1 | tee -a $OUT/gpu.txt
timeout ${TEST_S:-150} python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py -rA 2>&1 | tee $OUT/gpu-tests.log | tail -25
timeout 90 python3 -m coach autopilot --data fashion-mnist --budget 60s --out /tmp/ap1 --quiet 2>&1 | tail -15
echo "autopilot rc=${PIPESTATUS[0]}"
python3 bench/speed.py --rounds 2 --epochs 2 2>&1 | tee $OUT/speed.log | tail -6
# the autopilot beside the strongest simple baseline at 30 s, 60 s and 2 min (time to 94%: the first row >= 0.94)
timeout ${BENCH_S:-420} python3 bench/autopilot.py --only ${ROWS:-fashion-30s fashion-60s fashion-2m} --scale ${SCALE:-1} \
  2>&1 | tee $OUT/bench.log | tail -12
