"""Fuzz voxfield's readers, decoders and command line with mutated files.

    python benchmarks/fuzz.py --cases 20000 --workers 2          # writes benchmarks/results/fuzz/
    python benchmarks/fuzz.py --cases 500 --workers 1 --seed 3   # a short run with another seed
    python benchmarks/fuzz.py --seed 0 --replay 1234             # re-run case 1234 of seed 0, verbosely
    python benchmarks/fuzz.py --kill 6                           # SIGKILL compress/decompress, check debris

Writes ``fuzz.json`` (every failing case in full), ``fuzz.md`` (outcomes per target kind x
mutator, per operation, and the distinct failure signatures with one reproducer each) and
``fuzz.png`` into ``--out``. Exit status: 0 when no case failed, 1 otherwise. The seed
corpus is built once and cached in ``$VOXFIELD_FUZZ_CACHE`` (default: the temp folder).
See :mod:`voxfield.bench.fuzz`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=2000, help="number of cases")
    ap.add_argument("--start", type=int, default=0, help="first case number")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--mem-gb", type=float, default=8.0, help="address-space limit of a worker (0: none)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "fuzz")
    ap.add_argument("--corpus", type=Path, default=None, help="corpus cache folder")
    ap.add_argument("--replay", type=int, default=None, metavar="CASE", help="re-run one case verbosely")
    ap.add_argument("--keep", type=Path, default=None, help="with --replay: copy the case's sandbox here")
    ap.add_argument("--kill", type=int, default=None, metavar="TRIALS", help="kill-and-rerun trials instead")
    args = ap.parse_args()

    if args.replay is not None:
        from voxfield.bench.fuzz import replay

        r = replay(args.replay, args.seed, timeout=args.timeout, corpus_dir=args.corpus, keep=args.keep,
                   mem_gb=args.mem_gb)
        for k in ("number", "target", "file", "family", "mutator", "mutation", "op", "args", "rc", "outcome",
                  "findings", "seconds"):
            print(f"{k:>9}: {r.get(k)}")
        print("--- captured stdout/stderr ---")
        print(r.get("stderr", ""))
        if r.get("detail"):
            print("--- detail ---")
            print(r["detail"])
        return 0 if r["outcome"] in ("ok", "clean") else 1

    if args.kill is not None:
        from voxfield.bench.fuzz import kill_check

        res = kill_check(args.kill, args.seed, log=print)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "kill.json").write_text(json.dumps(res, indent=1))
        bad = [r for r in res if r["outcome"] != "ok"]
        print(f"{len(res)} trials, {len(bad)} failing -> {args.out / 'kill.json'}")
        return 1 if bad else 0

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from voxfield.bench.fuzz import FAILURES, failure_table, run_fuzz

    command = "python benchmarks/fuzz.py " + shlex.join(sys.argv[1:])
    with Progress(TextColumn("fuzz"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[fails]} failing"),
                  TimeElapsedColumn(), TimeRemainingColumn()) as progress:
        task = progress.add_task("cases", total=args.cases, fails=0)
        fails = 0

        def on_result(r: dict) -> None:
            nonlocal fails
            fails += r["outcome"] in (*FAILURES, "fuzzer-error")
            progress.update(task, advance=1, fails=fails)

        data = run_fuzz(args.cases, args.seed, workers=args.workers, timeout=args.timeout, start=args.start,
                        out=args.out, corpus_dir=args.corpus, mem_gb=args.mem_gb, on_result=on_result,
                        log=progress.console.print, command=command)
    m = data["meta"]
    print(f"{args.cases} cases in {m['run_seconds']:.0f} s ({m['rate']:.1f} cases/s); outcomes {data['totals']}")
    print(failure_table(data))
    print(f"reports in {args.out}/fuzz.md, fuzz.json, fuzz.png")
    return 1 if data["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
