#!/usr/bin/env python3
"""Checks a provenance statement against the artifacts: the in-toto Statement v1 and SLSA v1
shape, and that every subject's SHA-256 matches the file of that name in the given directory.

Usage: check-provenance.py dist/bkg-db.intoto.json DIR
"""
import hashlib
import json
import sys
from pathlib import Path


def main(path, directory):
    s = json.loads(Path(path).read_text())
    problems = []
    if s.get("_type") != "https://in-toto.io/Statement/v1":
        problems.append("_type is not an in-toto Statement v1")
    if s.get("predicateType") != "https://slsa.dev/provenance/v1":
        problems.append("predicateType is not SLSA provenance v1")
    bd = s.get("predicate", {}).get("buildDefinition", {})
    for key in ("buildType", "externalParameters", "resolvedDependencies"):
        if key not in bd:
            problems.append(f"buildDefinition.{key} is missing")
    if not s.get("predicate", {}).get("runDetails", {}).get("builder", {}).get("id"):
        problems.append("runDetails.builder.id is missing")
    for subj in s.get("subject", []):
        f = Path(directory) / subj["name"]
        if not f.exists():
            problems.append(f"subject {subj['name']} is not in {directory}")
            continue
        if hashlib.sha256(f.read_bytes()).hexdigest() != subj["digest"]["sha256"]:
            problems.append(f"subject {subj['name']}: the digest does not match the file")
    if not s.get("subject"):
        problems.append("no subject")
    for p in problems:
        print(f"{path}: {p}")
    if not problems:
        print(f"{path}: in-toto Statement v1, SLSA provenance v1, {len(s['subject'])} subject(s) match")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
