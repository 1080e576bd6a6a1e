"""``python -m bench {spawn,tasks,blob,scale,quickstart,load,all} [--smoke] [--out DIR] [--no-azurite]
[--compute PROVIDER]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import blob, load, quickstart, scale, spawn, tasks
from bench.common import Report, console


def _spawn(smoke: bool) -> Report:
    rates = spawn.spawn_rate(100 if smoke else 3000)
    report = Report("spawn", ["loop", "spawns/s (/bin/true, 8 at a time)"])
    for loop, rate in rates.items():
        report.add(loop, rate)
    report.details = rates
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", choices=["spawn", "tasks", "blob", "scale", "quickstart", "load", "all"])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the benchmark works")
    parser.add_argument("--out", type=Path, default=None, help="where to write the JSON results")
    parser.add_argument("--no-azurite", action="store_true", help="blob: measure openbatch only")
    parser.add_argument("--compute", action="append", default=[], metavar="PROVIDER",
                        help="tasks: also measure this --compute (e.g. dask-local:2) beside the local provider, "
                             "or the local provider with other serve options (--compute='--node-isolation off')")
    parser.add_argument("--tasks", type=int, default=None, metavar="N", help="scale: tasks in the job (default 100,000)")
    args = parser.parse_args(argv)
    names = ["spawn", "tasks", "blob", "scale", "quickstart", "load"] if args.name == "all" else [args.name]
    for name in names:
        if name == "spawn":
            report = _spawn(args.smoke)
        elif name == "tasks":
            report = tasks.run(tasks.SMOKE if args.smoke else tasks.Sizes(), args.compute)
        elif name == "blob":
            report = blob.run(blob.SMOKE if args.smoke else blob.Sizes(), with_azurite=not args.no_azurite)
        elif name == "scale":
            sizes = scale.SMOKE if args.smoke else scale.Sizes()
            report = scale.run(scale.Sizes(args.tasks) if args.tasks else sizes)
        elif name == "load":
            report = load.run(load.SMOKE if args.smoke else load.Sizes())
        else:
            report = quickstart.run(1 if args.smoke else 5)
        report.show()
        path = report.save(args.out)
        console.print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
