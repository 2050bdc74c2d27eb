#!/usr/bin/python3
"""Validates SARIF files against the SARIF 2.1.0 JSON schema kept beside
this script (sarif-schema-2.1.0.json, JSON Schema draft-04), with
python3-jsonschema. Usage: validate-sarif.py FILE...; exit status 0 when
every FILE is valid, 1 when one is not (each error is printed), 3 when
python3-jsonschema is missing."""
import json
import pathlib
import sys

try:
    import jsonschema
except ImportError:
    print("validate-sarif: python3-jsonschema is missing: apt-get install python3-jsonschema",
          file=sys.stderr)
    sys.exit(3)

schema = json.loads((pathlib.Path(__file__).parent / "sarif-schema-2.1.0.json").read_text())
validator = jsonschema.Draft4Validator(schema)
bad = 0
for name in sys.argv[1:]:
    with open(name, encoding="utf-8") as f:
        doc = json.load(f)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    for e in errors:
        path = "/".join(str(p) for p in e.absolute_path)
        print(f"{name}: /{path}: {e.message}", file=sys.stderr)
    bad += bool(errors)
sys.exit(1 if bad else 0)
