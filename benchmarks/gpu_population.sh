#!/usr/bin/env bash
# Population throughput, a train.seeds run and a 1,024-trial population sweep on a CUDA machine (under 8 minutes).
# Prepare here:  mkdir -p .gpu && cp -r ../shared/gpu/. .gpu/ && echo /.gpu/ >> .git/info/exclude
# Run there (device tool, carry [".gpu"]):  bash benchmarks/gpu_population.sh
# Writes $OUT/population_cuda.json (copy it to benchmarks/results/) and prints the table.
set -euo pipefail
bash .gpu/setup.sh >/dev/null
export PYTHONPATH=$PWD
OUT=${OUT:-/tmp/ganlab-gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 - "$OUT" <<'PY'
import json, sys, time
from benchmarks import population
res = population.run(iterations=100, repeats=3, sizes=(1, 16, 64, 256, 1024), device="cuda",
                     cases={"default 1D, batch 1024": [], "ring8, batch 256": ["data=ring8"]})
res["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
open(f"{sys.argv[1]}/population_cuda.json", "w").write(json.dumps(res, indent=2))
print(population.table(res))
PY
MLFLOW_TRACKING_URI=sqlite:///$OUT/mlflow.db timeout 300 python3 -m ganlab.train train.seeds=64 \
  train.accelerator=gpu train.iterations=2000 tracking.uri=sqlite:///$OUT/mlflow.db | tail -4
# The issue's end-to-end target: a 1,024-trial default sweep as one population on the GPU in under 5 minutes
python3 - "$OUT" <<'PY'
import sys, yaml
spec = yaml.safe_load(open("sweeps/default.yaml"))
spec.update(trials=1024, study_name="default_gpu")
spec["fixed"] = spec["fixed"] + ["train.accelerator=gpu"]
open(f"{sys.argv[1]}/default_gpu.yaml", "w").write(yaml.safe_dump(spec))
PY
start=$(date +%s)
( cd "$OUT" && MLFLOW_TRACKING_URI=sqlite:///$OUT/mlflow.db timeout 330 python3 -m ganlab.sweep "$OUT/default_gpu.yaml" \
    --population 1024 --storage sqlite:///$OUT/optuna.db > "$OUT/sweep_1024.log" 2>&1 ) || echo "sweep exit $?"
echo "1024-trial population sweep: $(( $(date +%s) - start )) s"; tail -12 "$OUT/sweep_1024.log"
