#!/usr/bin/env python3
"""SLSA v1 provenance (an in-toto Statement v1) for a bkg-db binary.

Subjects: the binary (and any other artifacts given) with their SHA-256. The build definition
names the command that made the binary, the toolchain and the target; resolved dependencies are
the source commit and every crate Cargo.lock pins, with its checksum.

Usage: slsa.py --binary target/release/bkg-db --profile release --out dist/bkg-db.intoto.json
               [--subject dist/bkg-db.cdx.json ...] [--started RFC3339]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tomllib
import uuid
from datetime import datetime, timezone
from pathlib import Path

from digest import sha256

ROOT = Path(__file__).resolve().parents[2]


def run(*cmd):
    try:
        return subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--profile", default="release")
    ap.add_argument("--out", required=True)
    ap.add_argument("--subject", action="append", default=[])
    ap.add_argument("--started")
    args = ap.parse_args()
    commit = run("git", "rev-parse", "HEAD")
    dirty = bool(run("git", "status", "--porcelain", "--untracked-files=no"))
    lock = tomllib.loads((ROOT / "Cargo.lock").read_text())
    deps = []
    if commit:
        deps.append({"uri": f"git+file://{ROOT}@{commit}", "digest": {"gitCommit": commit},
                     "annotations": {"dirty": dirty}})
    for p in lock.get("package", []):
        if p.get("checksum"):
            deps.append({"uri": f"pkg:cargo/{p['name']}@{p['version']}", "digest": {"sha256": p["checksum"]}})
    subjects = [{"name": Path(args.binary).name, "digest": {"sha256": sha256(args.binary)}}]
    subjects += [{"name": Path(s).name, "digest": {"sha256": sha256(s)}} for s in args.subject]
    profile_flag = ["--release"] if args.profile == "release" else []
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subjects,
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "urn:bkg-db:build:cargo:v1",
                "externalParameters": {
                    "command": ["cargo", "build", "--locked", *profile_flag, "-p", "bkg-db", "--bin", "bkg-db"],
                    "profile": args.profile,
                    "source": {"commit": commit, "dirty": dirty},
                },
                "internalParameters": {
                    "rustc": run("rustc", "--version"),
                    "cargo": run("cargo", "--version"),
                    "target": f"{platform.machine()}-unknown-linux-gnu",
                    "os": f"{platform.system()} {platform.release()}",
                },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": "urn:bkg-db:builder:make"},
                "metadata": {
                    "invocationId": f"urn:uuid:{uuid.uuid4()}",
                    "startedOn": args.started or now(),
                    "finishedOn": now(),
                },
            },
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(statement, indent=1) + "\n")
    print(f"slsa: {args.out}: {len(subjects)} subject(s), {len(deps)} resolved dependencies"
          + (" (working tree has uncommitted changes)" if dirty else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
