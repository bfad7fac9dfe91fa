#!/usr/bin/env python3
"""Validates CycloneDX JSON files against the CycloneDX schema of their specVersion (the schemas
that ship with cyclonedx-python-lib), and checks that every component has a licence.

Usage: validate-sbom.py FILE...
"""
import json
import sys

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator


def main(paths):
    bad = 0
    for path in paths:
        text = open(path).read()
        doc = json.loads(text)
        version = SchemaVersion.from_version(doc["specVersion"])
        error = JsonStrictValidator(version).validate_str(text)
        if error is not None:
            print(f"{path}: not valid CycloneDX {doc['specVersion']}: {error}")
            bad += 1
            continue
        unlicensed = [c["name"] for c in doc.get("components", []) if not c.get("licenses")]
        if unlicensed:
            print(f"{path}: components without a licence: {', '.join(unlicensed)}")
            bad += 1
            continue
        print(f"{path}: valid CycloneDX {doc['specVersion']}, {len(doc.get('components', []))} components")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
