"""Docstrings and comments point only at files that exist in this repository.

A pointer to a document a user cannot open (a design note or reference kept outside the repository) explains
nothing; what users need lives in ``docs/``. Checked in every docstring and comment: each reference to a
documentation file (``*.md``, ``*.rst``), to a source file written with its folder (``*.py``, ``*.sh``, ...), and
to a JSON file under a ``configs``/``bundles``/``benchmarks``/``docs`` folder (other JSON paths are usually outputs,
such as ``runs/split.json``). A path with a folder must be the end of an existing file's path; a bare file name must
be the name of an existing file or of one the module itself writes (a string in its code, such as a report); an
absolute path is never a file of the repository. The pages of ``docs/`` are held to the same rule, and every test
they cite as evidence must exist.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("monai_pruning", "benchmarks", "bundles", "tests")
SKIPPED_DIRS = {".git", ".venv", "__pycache__", "build", "dist", "runs", "data", "models"}

# A reference starts after anything but a word character or a dot; after a placeholder such as ``<output_dir>/`` it
# is the part that follows, and an absolute path is read without its leading slash (so it names no repository file).
_START = r"(?<![\w.-])"
_END = r"(?![\w/-])"
DOC_REFERENCE = re.compile(_START + r"((?:[\w.-]+/)*[\w-][\w.-]*\.(?:md|rst))" + _END)
SOURCE_REFERENCE = re.compile(_START + r"((?:[\w.-]+/)+[\w-][\w.-]*\.(?:py|sh|conf|cfg|toml))" + _END)
CONFIG_REFERENCE = re.compile(
    _START + r"((?:[\w.-]+/)*(?:configs|bundles|benchmarks|docs)/(?:[\w.-]+/)*[\w-][\w.-]*\.json)" + _END
)
PATTERNS = (DOC_REFERENCE, SOURCE_REFERENCE, CONFIG_REFERENCE)
URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+")


def _references(text: str) -> list[re.Match]:
    """The file references in ``text``; URLs are blanked out first (same length, so offsets stay)."""
    text = URL.sub(lambda url: " " * len(url.group()), text)
    return [match for pattern in PATTERNS for match in pattern.finditer(text)]


def _repo_files() -> list[Path]:
    files = []
    for path in REPO.rglob("*"):
        relative = path.relative_to(REPO)
        if path.is_file() and not SKIPPED_DIRS.intersection(relative.parts[:-1]):
            files.append(relative)
    return files


FILES = _repo_files()
PATHS = {path.as_posix() for path in FILES}
NAMES = {path.name for path in FILES}


def _python_prose(source: str) -> tuple[list[tuple[int, str]], set[str]]:
    """The comments and docstrings of a Python file, with their line numbers, and the other string constants."""
    prose = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            prose.append((token.start[0], token.string))
    docstrings = set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    docstrings.add(id(first.value))
                    prose.append((first.lineno, first.value.value))
    constants = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    }
    return prose, constants


def _shell_prose(source: str) -> list[tuple[int, str]]:
    return [(number, line[line.index("#"):]) for number, line in enumerate(source.splitlines(), 1) if "#" in line]


def _exists(reference: str, written_by_module: set[str]) -> bool:
    reference = re.sub(r"^(\.\.?/)+", "", reference)
    if "/" in reference:
        return reference in PATHS or any(path.endswith("/" + reference) for path in PATHS)
    return reference in NAMES or any(reference in constant for constant in written_by_module)


def _scanned_files() -> list[Path]:
    suffixes = {".py", ".sh", ".conf"}
    return sorted(p for p in FILES if p.parts and p.parts[0] in SCANNED and p.suffix in suffixes)


def _dangling_references(relative: Path) -> list[str]:
    source = (REPO / relative).read_text(encoding="utf-8")
    if relative.suffix == ".py":
        prose, constants = _python_prose(source)
    else:
        prose, constants = _shell_prose(source), set()
    dangling = []
    for line, text in prose:
        for match in _references(text):
            if not _exists(match.group(1), constants):
                dangling.append(f"{relative}:{line + text.count(chr(10), 0, match.start())}: {match.group(1)}")
    return dangling


def test_the_scan_covers_the_package_the_benchmarks_and_the_bundles():
    roots = {path.parts[0] for path in _scanned_files()}
    assert {"monai_pruning", "benchmarks", "bundles"} <= roots


@pytest.mark.parametrize(
    "text, found",
    [
        ("see DESIGN.md, decision 3", ["DESIGN.md"]),
        ("(``reference/sauron.md`` section 2.1)", ["reference/sauron.md"]),
        ("docs/design.md and docs/sauron.md", []),
        ("the bundles' ``configs/multi_gpu_train.json``", []),
        ("``monai_pruning/handlers/no_such_handler.py``", ["monai_pruning/handlers/no_such_handler.py"]),
        ("``bundles/polyp_endoscopy_segmentation/configs/no_such_overlay.json``",
         ["bundles/polyp_endoscopy_segmentation/configs/no_such_overlay.json"]),
        ("see /work/elsewhere/NOTES.md", ["work/elsewhere/NOTES.md"]),
        ("see ../elsewhere/DESIGN.md", ["../elsewhere/DESIGN.md"]),
        ("as in https://example.org/project/README.md", []),
        ("writes ``results.md`` next to ``runs/split.json``", []),
        ("writes ``<output_dir>/results.md`` and ``<output_dir>/summary.md``", ["summary.md"]),
        ("``bundles/<task>/configs/prune_sauron.json``", []),
    ],
)
def test_references_to_missing_files_are_found_and_existing_ones_pass(text, found):
    references = [match.group(1) for match in _references(text)]
    assert [r for r in references if not _exists(r, {"results.md"})] == found


def test_docstrings_and_comments_reference_only_files_in_the_repository():
    dangling = [entry for path in _scanned_files() for entry in _dangling_references(path)]
    assert not dangling, "docstrings/comments name files that are not in the repository:\n" + "\n".join(dangling)


def _test_names() -> set[str]:
    names = set()
    for path in FILES:
        if path.parts[0] == "tests" and path.suffix == ".py":
            names.update(re.findall(r"^\s*def (test_\w+)", (REPO / path).read_text(encoding="utf-8"), re.MULTILINE))
    return names


def test_the_docs_cite_only_files_and_tests_that_exist():
    names = _test_names()
    missing = []
    for page in sorted(p for p in FILES if p.parts[0] == "docs" and p.suffix == ".md"):
        text = (REPO / page).read_text(encoding="utf-8")
        missing += [f"{page}: {m.group(1)}" for m in _references(text) if not _exists(m.group(1), set())]
        missing += [f"{page}: {name}" for name in re.findall(r"\b(test_\w+)\b(?!\.)", text) if name not in names]
    assert not missing, "docs/ cites files or tests that are not in the repository:\n" + "\n".join(missing)
