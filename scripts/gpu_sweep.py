"""Train variants of a `--recipe` and print test accuracy and seconds per seed: how the GPU recipes
in src/cnnlab/train/recipes.py were chosen (docs/speed.md, "gpu-recipe", has the tables).

A variants file is a JSON list; each entry names a recipe and what to change in it:

    [{"name": "no-ema", "recipe": "fast", "seeds": [0, 1, 2], "overrides": {"ema": null}},
     {"name": "best-4", "recipe": "best", "seeds": [0, 1, 2, 3], "ensemble": true, "trace": 20}]

    name       label for the output lines
    recipe     "fast" or "best" (the dataset's recipe for --device, then `overrides` on top;
               null values count, so {"ema": null} turns the EMA off)
    seeds      one run per seed (default [0])
    warmup     one untimed one-epoch run first, for cuDNN's autotuning (default false)
    tta        null, "flip" or "flip-translate" instead of the recipe's (default: the recipe's)
    trace      evaluate every this many epochs (default 0: only at the end); these evaluations are
               timed apart and taken off the run's seconds (runs before the 11th session, in
               docs/gpu-runs, counted them: under 1 s in all, see docs/speed.md)
    ensemble   also print the accuracy of the members' averaged probabilities so far
    profile    after the timed seeds, train the first seed once more under torch.profiler and print
               its this-many most expensive operations by GPU time (CPU time off a GPU); untimed,
               and not in the summary

Each run is timed as `cnnlab bench` times gpu-recipe (data on the device first, training plus
evaluation, synchronised). After the clock stops, each run's model is also scored with every TTA
(`accuracy_by_tta`: none, flip, flip-translate), so one sweep compares TTAs on the same weights.
With --probs-dir, each run's test probabilities are saved too. One JSON line per variant goes to
--out and a SUMMARY line to stdout; RUN and TRACE lines are printed as they happen, so a run cut off
by a time limit still shows how far it got.

    python scripts/gpu_sweep.py variants.json --data-dir /usr/share/datasets/fashion-mnist --out sweep.jsonl
    python scripts/gpu_sweep.py scripts/gpu_next.json --only fast- --data-dir ... --out next.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from cnnlab.bench.session import (accuracy_on_test, synchronize, test_batches, timed, to_device,
                                  train_in_memory)
from cnnlab.data import load_dataset
from cnnlab.evaluate import predict_proba
from cnnlab.errors import CnnlabError
from cnnlab.train.config import TrainConfig
from cnnlab.train.recipes import recipe_config, recipe_tta

TTAS = (None, "flip", "flip-translate")  # every run is also scored with each, untimed


def variant_config(variant: dict, data, device: torch.device, seed: int):
    """The TrainConfig of one seed of a variant: its recipe for the device, its overrides on top
    (checked as a config file's settings are: a misspelt name gets the closest one)."""
    cfg = recipe_config(data.name, variant["recipe"], device, seed=seed)
    return TrainConfig.from_dict({**cfg.to_dict(), **variant.get("overrides", {})},
                                 source=f"variant {variant['name']!r}")


def run_once(variant: dict, data, device: torch.device, seed: int, members: list | None,
             *, epochs: int | None = None, probs_dir: Path | None = None) -> dict:
    """One seed of a variant: accuracy, seconds, per-epoch seconds, the trace; appends to members."""
    cfg = variant_config(variant, data, device, seed)
    if epochs is not None:  # the warm-up run
        cfg = dataclasses.replace(cfg, epochs=epochs, warmup_epochs=0.0)
    tta = variant["tta"] if "tta" in variant else recipe_tta(data.name, variant["recipe"], device)
    every = variant.get("trace", 0) if epochs is None else 0  # the warm-up run traces nothing
    trace, traced = [], [0.0]  # traced: seconds spent evaluating the trace, taken off the run's time

    def on_epoch(epoch: int, seconds: float, model) -> bool:
        if every and (epoch % every == 0 or epoch == cfg.epochs):
            synchronize(device)  # the epoch's queued work is the run's, not the trace's
            start = time.perf_counter()
            trace.append([epoch, round(seconds, 2), round(accuracy_on_test(model, cfg, data, device, tta), 4)])
            synchronize(device)
            traced[0] += time.perf_counter() - start
            print(f"TRACE {variant['name']} seed {seed}: epoch {epoch}  {trace[-1][1]} s  {trace[-1][2]}",
                  flush=True)
        return False

    def run():
        session = train_in_memory(cfg, data, device, on_epoch=on_epoch)
        return accuracy_on_test(session.model, cfg, data, device, tta), session

    (accuracy, session), seconds = timed(run, device)
    seconds -= traced[0]
    row = {"seed": seed, "accuracy": round(accuracy, 5), "seconds": round(seconds, 3),
           "trace_seconds": round(traced[0], 3),
           "epoch_seconds": [round(s, 3) for s in session.epoch_seconds], "trace": trace,
           "accuracy_by_tta": {str(t): round(accuracy_on_test(session.model, cfg, data, device, t), 5)
                               for t in TTAS}}
    if epochs is None:
        print(f"RUN {variant['name']} seed {seed}: {row['accuracy']}  {row['seconds']} s  "
              f"by TTA {row['accuracy_by_tta']}", flush=True)
    save_probs = probs_dir is not None and epochs is None  # the warm-up run's are not kept
    if members is not None or save_probs:
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
        with autocast:
            probs, y = predict_proba(session.model, test_batches(cfg, data, device), device, tta=tta)
        if save_probs:  # for combining members offline
            probs_dir.mkdir(parents=True, exist_ok=True)
            torch.save({"probs": probs.half(), "y": y.to(torch.uint8), "tta": tta},
                       probs_dir / f"{variant['name']}-seed{seed}.pt")
        if members is not None:
            members.append(probs.float())
            average = torch.stack(members).mean(0)
            row["ensemble_accuracy"] = round((average.argmax(1).cpu() == y.cpu()).float().mean().item(), 5)
    return row


def profile_once(variant: dict, data, device: torch.device, top: int) -> str:
    """The variant's first seed trained under torch.profiler: a table of its `top` costliest operations."""
    from torch.profiler import ProfilerActivity, profile

    cfg = variant_config(variant, data, device, variant.get("seeds", [0])[0])
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        train_in_memory(cfg, data, device)
        synchronize(device)
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort_by, row_limit=top)


def sweep(variants: list[dict], data, device: torch.device, out=None, probs_dir: Path | None = None) -> list[dict]:
    """Run every variant; returns one summary dict per variant (also written to `out` as JSON lines)."""
    data = to_device(data, device)
    summaries = []
    for variant in variants:
        t0 = time.perf_counter()
        if variant.get("warmup"):
            run_once(variant, data, device, 1000, None, epochs=1)
        members = [] if variant.get("ensemble") else None
        rows = [run_once(variant, data, device, seed, members, probs_dir=probs_dir)
                for seed in variant.get("seeds", [0])]
        accuracies, seconds = [r["accuracy"] for r in rows], [r["seconds"] for r in rows]
        summary = {"name": variant["name"], "recipe": variant["recipe"], "overrides": variant.get("overrides", {}),
                   "mean_accuracy": round(statistics.fmean(accuracies), 5), "min_accuracy": min(accuracies),
                   "mean_seconds": round(statistics.fmean(seconds), 3), "runs": rows,
                   "wall_seconds": round(time.perf_counter() - t0, 1)}
        summaries.append(summary)
        if out is not None:
            out.write(json.dumps(summary) + "\n")
            out.flush()
        ensemble = f"  ensemble {rows[-1]['ensemble_accuracy']}" if members is not None else ""
        print(f"SUMMARY {summary['name']}: mean {summary['mean_accuracy']}  min {summary['min_accuracy']}  "
              f"{summary['mean_seconds']} s{ensemble}", flush=True)
        if variant.get("profile"):
            print(f"PROFILE {variant['name']}\n{profile_once(variant, data, device, int(variant['profile']))}",
                  flush=True)
    return summaries


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", type=Path, help="JSON list of variants (see the module docstring)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--data-dir")
    ap.add_argument("--out", type=Path, help="append one JSON line per variant here")
    ap.add_argument("--probs-dir", type=Path, help="save each run's test probabilities (its TTA, float16) "
                                                    "here as NAME-seedN.pt, untimed, to combine runs afterwards")
    ap.add_argument("--only", help="comma-separated variant names or name prefixes to run (default: all), "
                                   "e.g. fast- to fit one device call's 10 minutes")
    args = ap.parse_args(argv)
    variants = json.loads(args.variants.read_text())
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        variants = [v for v in variants if any(v["name"] == w or v["name"].startswith(w) for w in wanted)]
        if not variants:
            ap.error(f"--only {args.only!r} matches no variant in {args.variants}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda, but this torch sees no CUDA GPU: run it on a GPU machine, or pass --device cpu")
    try:
        data = load_dataset(args.data, args.data_dir, download=False)
        for variant in variants:  # every variant's settings checked before the first one trains
            variant_config(variant, data, device, 0)
    except CnnlabError as e:
        ap.error(str(e))
    print(torch.__version__, torch.cuda.get_device_name(device) if device.type == "cuda" else device, flush=True)
    out = args.out.open("a", encoding="utf-8") if args.out else None
    try:
        sweep(variants, data, device, out, args.probs_dir)
    finally:
        if out is not None:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
