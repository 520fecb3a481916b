"""The docs test's reading of Markdown: which blocks run, which are skipped, what they print."""

from __future__ import annotations

from pathlib import Path

from tests.docs.doc_blocks import missing_output, shell_blocks

SAMPLE = """# A page

```sh
echo one
#> one
```

```json
{"not": "run"}
```

````sh skip-docs-test: needs a Docker engine
docker compose up
````

```bash
printf 'a\\tb\\n'
#> a…b
```

```sh skip-docs-test
true
```
"""


def test_shell_blocks_in_order_with_skips_and_expectations(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(SAMPLE)
    blocks = shell_blocks(page)
    assert [b.line for b in blocks] == [3, 12, 16, 21]
    assert blocks[0].text == "echo one\n#> one\n" and blocks[0].expected == ("one",)
    assert blocks[0].skip_reason is None and blocks[0].where == "page.md:3"
    assert blocks[1].skip_reason == "needs a Docker engine"
    assert blocks[1].text == "docker compose up\n"
    assert blocks[2].expected == ("a…b",)
    assert blocks[3].skip_reason == "(no reason given)"


def test_expected_lines_match_stdout_in_order_or_stderr() -> None:
    out = "first\nsecond line\nthird\n"
    assert missing_output(("first", "second …", "third"), out, "") == []
    assert missing_output(("third", "first"), out, "") == ["first"]  # order counts in stdout
    assert missing_output(("error: …",), out, "error: refused\n") == []
    assert missing_output(("second",), out, "") == ["second"]  # whole lines, not parts
    assert missing_output(("a [b] (c)*",), "a [b] (c)*\n", "") == []  # literal, not a regex
