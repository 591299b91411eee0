"""The README's Python snippets import what they use the way pasqal-cloud 0.24 recommends: a
copy-pasted snippet prints no deprecation warning."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def snippet_imports() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    lines = (line for block in blocks for line in block.splitlines())
    return [line for line in lines if re.match(r"(from \S+ )?import ", line)]


#: Runs the imports (argv[1]) in a fresh interpreter and prints every deprecation they warn of.
_RECORD = """
import sys, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    exec(sys.argv[1])
for w in caught:
    if issubclass(w.category, DeprecationWarning):
        print(w.message)
"""


def test_the_readme_snippets_import_without_deprecation_warnings():
    imports = snippet_imports()
    assert any("pasqal_cloud" in line for line in imports)  # the SDK's, at least
    done = subprocess.run(
        [sys.executable, "-c", _RECORD, "\n".join(imports)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "", done.stdout
