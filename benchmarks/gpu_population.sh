#!/usr/bin/env bash
# Issue 14 on a CUDA machine: the CUDA tests, population throughput against the single run on the same
# card (eager and with CUDA graphs), a train.seeds run, and a 1,024-trial default sweep as one
# population (CUDA graphs on). The device tool allows 600 s a call, so run it in two calls:
#   bash benchmarks/gpu_population.sh first     # tests, throughput, train.seeds (~5 min)
#   bash benchmarks/gpu_population.sh sweep     # the 1,024-trial sweep (up to ~6 min)
#   bash benchmarks/gpu_population.sh minibatch # model=minibatch throughput, eager and graphed (~3 min)
# Prepare here:  mkdir -p .gpu && cp -r ../shared/gpu/. .gpu/ && echo /.gpu/ >> .git/info/exclude
# Run there with the device tool, carry [".gpu"]. Results go to $OUT (copy population_cuda.json and the
# logs to benchmarks/results/). Each stage has its own time limit; a failing stage does not stop the next.
set -uo pipefail
PART=${1:-first}
bash .gpu/setup.sh >/dev/null || exit 1
export PYTHONPATH=$PWD MLFLOW_LOGGING_LEVEL=WARNING
OUT=${OUT:-/tmp/ganlab-gpu}
WORK=/tmp/ganlab-gpu-work  # stores and checkpoints: not sent back
mkdir -p "$OUT" "$WORK"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
stage() { echo; echo "== $1 ($(date +%T))"; }

if [ "$PART" = first ]; then
stage "CUDA tests"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -15

stage "throughput: member-iterations/s vs the single run, default recipe (batch 1024), eager and graphed"
timeout 300 python3 - "$OUT" <<'PY'
import json, sys, time
from benchmarks import population
case = {"default 1D, batch 1024": []}
res = population.run(iterations=100, repeats=3, sizes=(1, 16, 64, 256, 1024), device="cuda", cases=case)
graphed = population.run(iterations=100, repeats=3, sizes=(16, 256, 1024), device="cuda", cases=case,
                         cuda_graphs=True)
res["rows"] += graphed["rows"]
res["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
open(f"{sys.argv[1]}/population_cuda.json", "w").write(json.dumps(res, indent=2))
print(population.table(res))
PY

stage "train.seeds=64 on the GPU (1,000 iterations)"
( cd "$WORK" && timeout 60 python3 -m ganlab.train train.seeds=64 train.accelerator=gpu train.iterations=1000 \
    tracking.uri=sqlite:///$WORK/seeds.db 2>&1 | tail -5 )

fi

if [ "$PART" = minibatch ]; then
stage "throughput: model=minibatch (batch 128), eager and graphed"
timeout 400 python3 - "$OUT" <<'PY'
import json, sys, time
from benchmarks import population
case = population.cases_named(["minibatch 1D, batch 128"])
res = population.run(iterations=50, repeats=3, sizes=(1, 16, 64, 256), device="cuda", cases=case)
graphed = population.run(iterations=50, repeats=3, sizes=(64, 256), device="cuda", cases=case, cuda_graphs=True)
res["rows"] += graphed["rows"]
res["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
open(f"{sys.argv[1]}/population_minibatch_cuda.json", "w").write(json.dumps(res, indent=2))
print(population.table(res))
PY
fi

if [ "$PART" = sweep ]; then
stage "the default sweep, 1,024 trials as one population with CUDA graphs (target: under 5 minutes)"
python3 - "$WORK" <<'PY'
import sys, yaml
spec = yaml.safe_load(open("sweeps/default.yaml"))
spec.update(trials=1024, study_name="default_gpu")
spec["fixed"] = spec["fixed"] + ["train.accelerator=gpu"]
spec["population"] = {"cuda_graphs": True}
open(f"{sys.argv[1]}/default_gpu.yaml", "w").write(yaml.safe_dump(spec))
PY
start=$(date +%s)
( cd "$WORK" && timeout 420 python3 -m ganlab.sweep "$WORK/default_gpu.yaml" --population 1024 \
    --storage sqlite:///$WORK/optuna.db --tracking-uri sqlite:///$WORK/mlflow.db > "$OUT/sweep_1024.log" 2>&1 )
echo "sweep exit $? after $(( $(date +%s) - start )) s"
grep -E "^\[population\]" "$OUT/sweep_1024.log" | tail -4
grep -vE "^\[(sweep|population)\]" "$OUT/sweep_1024.log" | tail -25
fi
