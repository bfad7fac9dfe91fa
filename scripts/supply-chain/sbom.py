#!/usr/bin/env python3
"""CycloneDX 1.5 SBOM of the bkg-db binary, from `cargo metadata` and Cargo.lock.

Components are every crate the `bkg-db` package links on x86_64 Linux (normal and build
dependencies, not dev-only ones), each with its purl, its SPDX licence expression and the
SHA-256 checksum Cargo.lock pins; `dependencies` is the resolved graph. With --binary, the
binary's own SHA-256 goes into metadata.component.

Usage: sbom.py --out dist/bkg-db.cdx.json [--binary target/release/bkg-db]
"""
import argparse
import json
import subprocess
import sys
import tomllib
import uuid
from datetime import datetime, timezone
from pathlib import Path

from digest import sha256

ROOT = Path(__file__).resolve().parents[2]
TARGET = "x86_64-unknown-linux-gnu"


def metadata():
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", TARGET],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def lock_checksums():
    lock = tomllib.loads((ROOT / "Cargo.lock").read_text())
    return {(p["name"], p["version"]): p.get("checksum") for p in lock.get("package", [])}


def linked(meta, root_name):
    """Package ids reachable from `root_name` through normal and build dependencies."""
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = next(p["id"] for p in meta["packages"] if p["name"] == root_name and p["source"] is None)
    seen, stack, edges = set(), [root], {}
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        deps = [d["pkg"] for d in nodes[pid]["deps"] if any(k["kind"] in (None, "build") for k in d["dep_kinds"])]
        edges[pid] = deps
        stack.extend(deps)
    return root, seen, edges


def purl(p):
    return f"pkg:cargo/{p['name']}@{p['version']}"


def spdx(expr):
    """Old crates write `MIT/Apache-2.0`; SPDX says `MIT OR Apache-2.0`."""
    return " OR ".join(part.strip() for part in expr.split("/"))


def component(p, checksums):
    c = {"type": "library", "bom-ref": p["id"], "name": p["name"], "version": p["version"]}
    if p.get("description"):
        c["description"] = " ".join(p["description"].split())
    if p["license"]:
        c["licenses"] = [{"expression": spdx(p["license"])}]
    elif p.get("license_file"):
        c["licenses"] = [{"license": {"name": f"see {Path(p['license_file']).name} in the crate"}}]
    if p["source"] is not None:
        c["purl"] = purl(p)
        digest = checksums.get((p["name"], p["version"]))
        if digest:
            c["hashes"] = [{"alg": "SHA-256", "content": digest}]
    refs = []
    if p.get("repository"):
        refs.append({"type": "vcs", "url": p["repository"]})
    if p.get("homepage"):
        refs.append({"type": "website", "url": p["homepage"]})
    if refs:
        c["externalReferences"] = refs
    return c


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                              text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--binary")
    args = ap.parse_args()
    meta = metadata()
    checksums = lock_checksums()
    packages = {p["id"]: p for p in meta["packages"]}
    root, ids, edges = linked(meta, "bkg-db")
    top = packages[root]
    main_component = {
        "type": "application", "bom-ref": root, "name": "bkg-db", "version": top["version"],
        "licenses": [{"expression": top["license"]}],
        "description": "bkg-db server binary",
    }
    commit = git_commit()
    if commit:
        main_component["properties"] = [{"name": "bkg-db:git-commit", "value": commit}]
    if args.binary:
        main_component["hashes"] = [{"alg": "SHA-256", "content": sha256(args.binary)}]
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "bkg-db scripts/supply-chain/sbom.py"}]},
            "component": main_component,
        },
        "components": [component(packages[i], checksums) for i in sorted(ids) if i != root],
        "dependencies": [{"ref": i, "dependsOn": sorted(set(edges.get(i, [])))} for i in sorted(ids)],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(bom, indent=1) + "\n")
    print(f"sbom: {args.out}: {len(bom['components'])} components")


if __name__ == "__main__":
    sys.exit(main())
