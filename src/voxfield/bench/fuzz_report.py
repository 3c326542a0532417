"""Reports of a fuzz run (:mod:`voxfield.bench.fuzz`): ``fuzz.json``, ``fuzz.md``, ``fuzz.png``.

The Markdown holds the outcome totals, a table of cases and failures per target kind ×
mutator, outcomes per operation, and the distinct failure signatures, each with its count
and one reproducer (seed, case number, target, mutation, operation, and the command that
replays it).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from voxfield.bench.fuzz_ops import FAILURES, OUTCOMES

_ORDER = (*OUTCOMES, "fuzzer-error")


def signatures(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Distinct failure signatures, most frequent first, each with its first reproducer."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        seen = set()
        for outcome, sig in r.get("findings", []):
            if (outcome in FAILURES or outcome == "fuzzer-error") and (outcome, sig) not in seen:
                seen.add((outcome, sig))
                groups[(outcome, sig)].append(r)
    out = []
    for (outcome, sig), rs in groups.items():
        first = min(rs, key=lambda r: r["number"])
        out.append({"outcome": outcome, "signature": sig, "count": len(rs), "reproducer": _repro(first)})
    out.sort(key=lambda d: (_ORDER.index(d["outcome"]), -d["count"], d["signature"]))
    return out


def _repro(r: dict[str, Any]) -> dict[str, Any]:
    return {"seed": r["seed"], "case": r["number"], "target": f"{r['target']}/{r['file']}", "family": r["family"],
            "mutator": r["mutator"], "mutation": r.get("mutation", ""), "operation": r["op"],
            "args": {k: v for k, v in r.get("args", {}).items() if k not in ("mut_seed", "pick")},
            "replay": f"python benchmarks/fuzz.py --seed {r['seed']} --replay {r['number']}",
            "detail": (r.get("detail") or "")[-1500:], "stderr": (r.get("stderr") or "")[-600:]}


def summary(results: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """Everything ``fuzz.json`` holds (failing cases in full, the others in short)."""
    totals = Counter(r["outcome"] for r in results)
    short = ("number", "target", "file", "mutator", "op", "outcome", "seconds", "notes")
    return {
        "meta": meta,
        "totals": {k: totals.get(k, 0) for k in _ORDER if totals.get(k, 0) or k in OUTCOMES},
        "failures": sum(totals.get(k, 0) for k in (*FAILURES, "fuzzer-error")),
        "signatures": signatures(results),
        "cases": [r if r["outcome"] in (*FAILURES, "fuzzer-error") else {k: r[k] for k in short if k in r}
                  for r in sorted(results, key=lambda r: r["number"])],
        "families": sorted({r["family"] for r in results}),
        "notes": dict(Counter(n for r in results for n in r.get("notes", [])).most_common()),
    }


def _cell(n: int, f: int) -> str:
    return "" if n == 0 else (f"{n}" if f == 0 else f"{n} · **{f}✗**")


def markdown(data: dict[str, Any], results: list[dict[str, Any]]) -> str:
    """The ``fuzz.md`` text."""
    m = data["meta"]
    lines = ["# voxfield fuzzing", "",
             f"`{m.get('command', '')}` — voxfield {m.get('version')}, corpus `{m.get('corpus')}` "
             f"({m.get('seeds')} seeds), seed {m.get('seed')}, {m.get('cases')} cases, {m.get('workers')} worker(s), "
             f"timeout {m.get('timeout')} s, {m.get('seconds', 0):.0f} s ({m.get('rate', 0):.1f} cases/s).", "",
             f"**{data['failures']} failing case(s)**, {len(data['signatures'])} distinct signature(s). Outcome "
             "classes: ok (exit 0), clean (exit 2, one `voxfield: error:` line naming the file; a VoxfieldError "
             "from the Python API), and the failures " + ", ".join(FAILURES) + ".", "",
             "| outcome | cases |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in data["totals"].items()]
    muts = sorted({r["mutator"] for r in results})
    fams = sorted({r["family"] for r in results})
    n: Counter[tuple[str, str]] = Counter((r["family"], r["mutator"]) for r in results)
    f: Counter[tuple[str, str]] = Counter((r["family"], r["mutator"]) for r in results
                                          if r["outcome"] in (*FAILURES, "fuzzer-error"))
    lines += ["", "## Cases per target kind × mutator", "",
              "Each cell: cases run · **failing cases✗**.", "",
              "| target kind | " + " | ".join(muts) + " | all |", "|---|" + "---:|" * (len(muts) + 1)]
    for fam in fams:
        row = [_cell(n[(fam, mu)], f[(fam, mu)]) for mu in muts]
        tot_n = sum(n[(fam, mu)] for mu in muts)
        tot_f = sum(f[(fam, mu)] for mu in muts)
        lines.append(f"| {fam} | " + " | ".join(row) + f" | {_cell(tot_n, tot_f)} |")
    ops = sorted({r["op"] for r in results})
    lines += ["", "## Outcomes per operation", "",
              "| operation | " + " | ".join(_ORDER) + " |", "|---|" + "---:|" * len(_ORDER)]
    oc: Counter[tuple[str, str]] = Counter((r["op"], r["outcome"]) for r in results)
    for op in ops:
        lines.append(f"| {op} | " + " | ".join(str(oc[(op, o)] or "") for o in _ORDER) + " |")
    lines += ["", "## Distinct failure signatures", ""]
    if not data["signatures"]:
        lines.append("None.")
    for i, s in enumerate(data["signatures"], 1):
        r = s["reproducer"]
        lines += [f"### {i}. `{s['signature']}`", "",
                  f"- outcome **{s['outcome']}**, {s['count']} case(s)",
                  f"- reproducer: seed {r['seed']}, case {r['case']}: `{r['operation']}` on `{r['target']}` "
                  f"({r['family']}) after `{r['mutator']}`: {r['mutation'][:200]}",
                  f"- replay: `{r['replay']}`"]
        if r["args"]:
            lines.append(f"- operation arguments: `{json.dumps(r['args'], default=str)[:200]}`")
        tail = (r["detail"] or r["stderr"]).strip().splitlines()[-6:]
        if tail:
            lines += ["", "```", *[t[:200] for t in tail], "```"]
        lines.append("")
    if data.get("notes"):
        lines += ["## Notes (not counted as failures)", "", "| note | cases | first case |", "|---|---:|---:|"]
        for note, k in data["notes"].items():
            first = min(r["number"] for r in results if note in r.get("notes", []))
            lines.append(f"| {note} | {k} | {first} |")
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], results: list[dict[str, Any]], path: Path) -> None:
    """Stacked bars of the outcomes per target kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = sorted({r["family"] for r in results})
    counts = Counter((r["family"], r["outcome"]) for r in results)
    colors = {"ok": "#4caf50", "clean": "#90caf9", "unnamed": "#ffb74d", "debris": "#ce93d8",
              "silent-wrong": "#e53935", "wrote-outside": "#8e24aa", "bad-exit": "#ff7043", "traceback": "#b71c1c",
              "hang": "#212121", "abort": "#000000", "fuzzer-error": "#9e9e9e"}
    fig, ax = plt.subplots(figsize=(max(8, 0.35 * len(fams) + 3), 5))
    bottom = [0] * len(fams)
    for o in reversed(_ORDER):
        vals = [counts[(fam, o)] for fam in fams]
        if any(vals):
            ax.bar(fams, vals, bottom=bottom, label=o, color=colors.get(o))
            bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylabel("cases")
    m = data["meta"]
    ax.set_title(f"voxfield fuzzing: {m.get('cases')} cases, seed {m.get('seed')}, {data['failures']} failing")
    ax.tick_params(axis="x", rotation=75, labelsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(out: Path, results: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """Write ``fuzz.json``, ``fuzz.md`` and ``fuzz.png`` into ``out``; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    data = summary(results, meta)
    (out / "fuzz.json").write_text(json.dumps(data, indent=1, default=str))
    (out / "fuzz.md").write_text(markdown(data, results))
    plot(data, results, out / "fuzz.png")
    return data


def failure_table(data: dict[str, Any]) -> str:
    """A plain-text list of the failure signatures (for test output)."""
    rows = [f"{s['count']:5d}  {s['outcome']:<13} {s['signature']}\n       -> {s['reproducer']['replay']}  "
            f"[{s['reproducer']['operation']} on {s['reproducer']['target']} after {s['reproducer']['mutation'][:120]}]"
            for s in data["signatures"]]
    return "\n".join(rows) or "no failures"
