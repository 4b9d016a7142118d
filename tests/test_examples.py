"""The README's Python API example is a file that runs (examples/python_api.py), and the README shows
exactly that file."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "python_api.py"


def test_the_api_example_runs_as_written():
    r = subprocess.run([sys.executable, str(EXAMPLE)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines() == ["offline: (307, 115)", "live: [100, 100, 30]"]


def test_the_readme_shows_the_example_file():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    code = EXAMPLE.read_text()
    body = code[code.index("import numpy"):]  # the file without its docstring
    assert any(b.strip() == body.strip() for b in blocks), "README's Python API block differs from the example"
