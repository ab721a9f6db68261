"""`make bench`: run the benchmarks, write benchmarks/results/*.json, print a table.

    python -m benchmarks.run                  # everything (about an hour and a half on 2 cores)
    python -m benchmarks.run --only overhead  # just the loop-overhead ratio (about a minute)
    python -m benchmarks.run --only startup   # whole-process start-up and overhead (about 6 minutes)
    python -m benchmarks.run --only minibatch # the minibatch-discrimination layer's two forms (seconds)
    python -m benchmarks.run --only quality --seeds 1 --experiments default devnag_moments
    python -m benchmarks.run --only modes     # 2D mode-collapse benchmark (ring8, grid25)
    python -m benchmarks.run --only images    # digits: S2, S5 and ganlab's recipe, Frechet distance
    python -m benchmarks.run --only matrix    # every data family x model as typed, 3 seeds (hours)
    python -m benchmarks.run --only population  # K members trained together vs one run (minutes)
    python -m benchmarks.run --only threads   # two cohorts in two threads vs two processes (2 minutes)
    python -m benchmarks.run --only population_start  # starting 1,024 trials of a population sweep (2 minutes)
    python -m benchmarks.run --only seeds     # the default recipe with train.seeds=1, 3, 8 (6 minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from benchmarks import (
    cohort_threads,
    images,
    matrix,
    minibatch_layer,
    modes_2d,
    overhead,
    population,
    population_start,
    quality,
    seeds_cost,
    startup,
    sweep_speed,
)
from ganlab.runtime import configure_runtime

RESULTS = Path(__file__).resolve().parent / "results"


_SUFFIX = [""]  # --out-suffix: a partial re-run writes beside the full results instead of over them


def _save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    payload = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "torch": torch.__version__, **payload}
    path = RESULTS / f"{name}{_SUFFIX[0]}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["overhead", "startup", "minibatch", "quality", "sweep", "modes", "images",
                                           "matrix", "population", "population_start", "threads", "seeds"])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per reproduction")
    parser.add_argument("--default-seeds", type=int, default=5, help="seeds for the default recipe")
    parser.add_argument("--experiments", nargs="*", help="subset of: " + " ".join(quality.EXPERIMENTS))
    parser.add_argument("--mode-seeds", type=int, default=5, help="seeds per run of the 2D mode benchmark")
    parser.add_argument("--image-seeds", type=int, default=3, help="seeds per experiment of the image benchmark")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--matrix-seeds", type=int, default=3, help="seeds per cell of the recipe matrix")
    parser.add_argument("--matrix-only", nargs="*", help="families or data labels of the matrix to run")
    parser.add_argument("--matrix-models", nargs="*", help="models of the matrix to run (default: all)")
    parser.add_argument("--population-device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--population-sizes", type=int, nargs="*", default=list(population.SIZES),
                        help="K of the throughput table (none: skip it, run only the sweep comparison)")
    parser.add_argument("--population-cases", nargs="*",
                        help="throughput cases whose label contains one of these words (default: all)")
    parser.add_argument("--population-sweep-trials", type=int, default=64,
                        help="trials of the population-vs-workers sweep comparison (0: skip it)")
    parser.add_argument("--population-sweep-sizes", type=int, nargs="*", default=[16])
    parser.add_argument("--population-sweep", default="default",
                        help="the sweep (a name in sweeps/) of the population-vs-workers comparison; other than "
                             "default, results go to population_sweep_<name>.json")
    parser.add_argument("--population-sweep-repeats", type=int, default=1,
                        help="pairs (workers, then each population size) to run, in the TPE comparison and in "
                             "--population-same-trials; ratios are their median")
    parser.add_argument("--population-same-trials", type=int, default=0,
                        help="also train this many fixed parameter sets, pruning off, with 2 workers and with "
                             "the first --population-sweep-sizes (the engines alone; 0: skip)")
    parser.add_argument("--population-start-trials", type=int, default=1024,
                        help="population_start: how many slots one refill fills")
    parser.add_argument("--matrix-out", default="matrix", help="results file name (benchmarks/results/<name>.json)")
    parser.add_argument("--out-suffix", default="", help="appended to every results file name this run writes "
                        "(e.g. _default_only for --only quality --experiments default)")
    args = parser.parse_args()
    _SUFFIX[0] = args.out_suffix
    configure_runtime()

    if args.only in (None, "overhead"):
        print("overhead: ganlab loop vs plain PyTorch on devnag_moments", flush=True)
        res = overhead.run()
        path = _save("overhead", res)
        print(f"\n| loop | median optimizer steps/s |\n|---|---|\n| ganlab | {res['ganlab_median']:.0f} |\n"
              f"| plain PyTorch | {res['plain_median']:.0f} |\n| ratio (target >= 0.9) | {res['ratio']:.3f} |\n"
              f"-> {path}\n")

    if args.only in (None, "startup"):
        print("startup: whole-process wall of a 1-iteration run and of devnag_moments vs a bare script", flush=True)
        res = startup.run()
        path = _save("startup", res)
        print("\n" + startup.table(res) + f"\n-> {path}\n")

    if args.only in (None, "seeds"):
        print("seeds: the default recipe with train.seeds=N against one seed, whole process, one thread", flush=True)
        res = seeds_cost.run()
        path = _save("seeds_cost", res)
        print("\n" + seeds_cost.table(res) + f"\n-> {path}\n")

    if args.only in (None, "minibatch"):
        print("minibatch: the minibatch-discrimination layer, cdist form vs broadcast form", flush=True)
        res = minibatch_layer.run()
        path = _save("minibatch_layer", res)
        print("\n" + minibatch_layer.table(res) + f"\n-> {path}\n")

    if args.only in (None, "quality"):
        print("quality: final KS and W1/std per experiment", flush=True)
        res = quality.run(args.experiments, args.seeds, args.default_seeds, args.workers)
        path = _save("quality", res)
        print("\n| experiment | seeds | median KS | median W1/std | median wall s | max wall s | failed |")
        print("|---|---|---|---|---|---|---|")
        for name, s in res["summary"].items():
            print(f"| {name} | {s['seeds']} | {s['median_ks']:.4f} | {s['median_w1_over_std']:.4f} | "
                  f"{s['median_wall_s']:.0f} | {s['max_wall_s']:.0f} | {s['failed']} |")
        d = res["summary"].get("default")
        if d:
            print(f"\ndefault recipe meets its targets (KS <= 0.02, W1/std <= 0.03, < 90 s): {d['meets_targets']}; "
                  f"beats every reproduction: {d['beats_every_reproduction']}")
        print(f"-> {path}")

    if args.only in (None, "sweep"):
        print("sweep: default sweep, 1 vs 2 workers, pruning off vs on", flush=True)
        res = sweep_speed.run()
        path = _save("sweep", res)
        print("\n| trials | workers | pruning | trials | pruned | wall s | trials/h | best KS |\n"
              "|---|---|---|---|---|---|---|---|")
        for r in res["runs"]:
            pruning = "on" if r["pruning"] else "off"
            print(f"| {r['sampler']} | {r['workers']} | {pruning} | {r['trials']} | {r['pruned']} | "
                  f"{r['wall_s']:.0f} | {r['trials_per_hour']:.0f} | {r['best_ks']:.4f} |")
        print(f"\n2-worker speed-up {res['speedup_2_workers']:.2f} (target >= 1.7); pruning saves "
              f"{res['pruning_time_saving']:.0%} of the time (target >= 30%) with best KS "
              f"x{res['pruning_best_ratio']:.2f} (target <= 1.10)\n-> {path}")


    if args.only in (None, "modes"):
        print("modes: ring8 and grid25, plain GAN / PacGAN4 / ganlab recipe", flush=True)
        res = modes_2d.run(seeds=args.mode_seeds, workers=args.workers)
        path = _save("modes_2d", res)
        print("\n" + modes_2d.table(res) + f"\n-> {path}")

    if args.only in (None, "matrix"):
        print("matrix: every data family x model as a user types it, whole process", flush=True)
        res = matrix.run(seeds=args.matrix_seeds, workers=args.workers, models=args.matrix_models,
                         only=args.matrix_only)
        path = _save(args.matrix_out, res)
        print("\n" + matrix.table(res) + f"\n-> {path}")

    if args.only in (None, "population"):
        if args.population_sizes:  # `--population-sizes` with no sizes: the sweep comparison alone
            print(f"population: K members together vs one run, {args.population_device}", flush=True)
            res = population.run(sizes=tuple(args.population_sizes), device=args.population_device,
                                 cases=population.cases_named(args.population_cases))
            name = "population" if args.population_device == "cpu" else "population_cuda"
            path = _save(name, res)
            print("\n" + population.table(res) + f"\n-> {path}")
        if args.population_device == "cpu" and args.population_sweep_trials:
            print(f"population sweep: the {args.population_sweep} sweep, {args.population_sweep_trials} trials, "
                  f"population vs 2 process workers", flush=True)
            res = sweep_speed.run_population(args.population_sweep_trials, tuple(args.population_sweep_sizes),
                                             repeats=args.population_sweep_repeats, sweep=args.population_sweep)
            name = "population_sweep" + ("" if args.population_sweep == "default" else f"_{args.population_sweep}")
            path = _save(name, res)
            print("\n| run | trials | complete | pruned | wall s | trials/h | trained iterations/h | best KS |\n"
                  "|---|---|---|---|---|---|---|---|")
            for r in res["runs"]:
                how = f"population {r['population']}" if r["population"] else f"{r['workers']} workers"
                print(f"| {how} | {r['trials']} | {r['complete']} | {r['pruned']} | {r['wall_s']:.0f} | "
                      f"{r['trials_per_hour']:.0f} | {r['iterations_per_hour']:,.0f} | {r['best_ks']:.4f} |")
            print("\n| pair | population | best config alone: population | workers | ratio |\n|---|---|---|---|---|")
            for b in res["best_configs"]:
                alone = [b[side]["standalone_median_ks_large"] for side in ("population_alone", "workers_alone")]
                print(f"| {b['pair']} | {b['population']} | {alone[0]:.4f} | {alone[1]:.4f} | {b['ratio']:.2f} |")
            print("\n" + ", ".join(f"{k}: {v:.2f}x" for k, v in res.items() if "ratio_population" in k)
                  + f" (target >= {res['target_ratio']}x); best configs alone (median KS over seeds 0-2 on "
                  f"10^6 samples), population / workers, median of the pairs: {res['best_config_ratio']:.2f} "
                  f"(no worse: <= 1; on the runs' own evaluation points {res['best_config_ratio_eval_samples']:.2f})"
                  f"\n-> {path}")

        if args.population_device == "cpu" and args.population_same_trials:
            size = args.population_sweep_sizes[0] if args.population_sweep_sizes else 8
            print(f"population, same trials: {args.population_same_trials} fixed parameter sets of the default "
                  f"sweep, pruning off, population {size} vs 2 process workers", flush=True)
            res = sweep_speed.run_population_same_trials(args.population_same_trials, size,
                                                         repeats=args.population_sweep_repeats)
            path = _save("population_same_trials", res)
            print("\n| run | wall s | trained iterations/h |\n|---|---|---|")
            for r in res["runs"]:
                how = f"population {size}" if r["population"] else "2 workers"
                print(f"| {how} | {r['wall_s']:.0f} | {r['iterations_per_hour']:,.0f} |")
            print(f"\npopulation {res['ratio']:.2f}x the workers' speed on the same trials (median of "
                  f"{', '.join(f'{x:.2f}' for x in res['ratios'])})\n-> {path}")

    if args.only in (None, "population_start"):
        print(f"population start: {args.population_start_trials} trials of the default sweep asked, written, "
              "composed and built (no training)", flush=True)
        res = population_start.run(trials=args.population_start_trials)
        path = _save("population_start", res)
        print("\n" + population_start.table(res) + f"\n-> {path}\n")

    if args.only in (None, "threads"):
        print("cohort threads: two cohorts in two threads of one process vs two processes", flush=True)
        res = cohort_threads.run()
        path = _save("cohort_threads", res)
        print("\n" + cohort_threads.table(res) + f"\n-> {path}")
    if args.only in (None, "images"):
        print("images: digits, S2 / S5 / ganlab recipe, Frechet distance in classifier features", flush=True)
        res = images.run(seeds=args.image_seeds, workers=args.workers)
        path = _save("images", res)
        best = res["summary"].get("ganlab_digits", {})
        print("\n" + images.table(res) + f"\n\nganlab_digits closes >= 90 % of the gap in < 10 min on every seed: "
              f"{best.get('meets_targets')}\n-> {path}")


if __name__ == "__main__":
    main()
