"""The examples of docs/api.md and docs/tutorial.md, run as written.

Each page runs top to bottom in a fresh directory: its ```python blocks in one namespace,
its ```sh lines through `eie`'s entry point (each must exit 0), and a ```text block right
after a python block whose text says "prints" is that block's exact output.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from eie.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs"
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.M | re.S)


def blocks(page: str) -> list[tuple[str, str, str]]:
    """(language, code, prose before the block) of every fenced block of a page."""
    text = (DOCS / page).read_text()
    out, pos = [], 0
    for m in _BLOCK.finditer(text):
        out.append((m.group(1), m.group(2), text[pos:m.start()]))
        pos = m.end()
    return out


def run_page(page: str, capsys) -> None:
    ns: dict = {"__name__": f"docs_{Path(page).stem}"}
    printed = None
    for i, (lang, code, before) in enumerate(blocks(page)):
        where = f"{page} block {i + 1}"
        if lang == "python":
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                exec(compile(code, where, "exec"), ns)
            printed = buf.getvalue()
            print(printed, end="")
        elif lang == "text" and "prints" in (before.strip().splitlines() or [""])[-1]:
            assert printed == code, f"{where}: the output shown is not what the block before prints:\n{printed}"
        elif lang == "sh":
            for line in code.strip().splitlines():
                argv = shlex.split(line)
                assert argv[0] == "eie", f"{where}: only eie commands are run here: {line}"
                rc = main(argv[1:])
                _, err = capsys.readouterr()
                assert rc == 0, f"{where}: `{line}` exited {rc}: {err}"


@pytest.mark.parametrize("page", ["api.md", "tutorial.md"])
def test_doc_examples_run(page, tmp_path, monkeypatch, capsys):
    assert any(lang == "python" for lang, _, _ in blocks(page))
    monkeypatch.chdir(tmp_path)
    run_page(page, capsys)


def test_a_failing_example_fails(tmp_path, monkeypatch, capsys):
    """The runner itself: an assert in a block, a wrong shown output and a failing command fail."""
    monkeypatch.setattr("tests.test_docs_examples.DOCS", tmp_path)
    monkeypatch.chdir(tmp_path)
    for text in ("```python\nassert 1 == 2\n```\n", "```python\nprint('a')\n```\nprints\n\n```text\nb\n```\n",
                 "```sh\neie info missing.eie\n```\n"):
        (tmp_path / "page.md").write_text(text)
        with pytest.raises(AssertionError):
            run_page("page.md", capsys)
