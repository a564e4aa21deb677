"""Which code produced a result (eoslab.provenance): the version and, in a git checkout, the commit."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import eoslab
from eoslab.provenance import code_identity, record_code, recorded_codes


def test_code_identity_names_the_version_and_the_checkouts_commit():
    identity = code_identity()
    assert identity.startswith(f"eoslab {eoslab.__version__}")
    package = Path(eoslab.__file__).parent
    git = shutil.which("git")
    head = git and subprocess.run(["git", "-C", str(package), "rev-parse", "--short", "HEAD"], capture_output=True)
    if not head or head.returncode != 0:
        pytest.skip("eoslab is not in a git checkout here (an installed wheel): the version alone")
    assert identity.split(", ")[1] == f"git {head.stdout.decode().strip()}"


def test_recorded_codes_are_the_distinct_lines_of_code_txt_in_order(tmp_path):
    assert recorded_codes(tmp_path) == []  # a sweep run before the file was kept
    record_code(tmp_path)
    record_code(tmp_path)
    with open(tmp_path / "code.txt", "a") as f:
        f.write("2026-01-01T00:00:00+00:00\teoslab 0.0.9, git abc1234, modified\n\n")
    assert recorded_codes(tmp_path) == [code_identity(), "eoslab 0.0.9, git abc1234, modified"]


def _identity_of(package_parent: Path) -> str:
    """code_identity() of the eoslab package copied under ``package_parent``, in a fresh interpreter."""
    code = "from eoslab.provenance import code_identity; print(code_identity())"
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.decode().strip()


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a", *args], check=True)


def test_two_different_uncommitted_states_are_two_identities(tmp_path):
    """``modified`` carries a digest of the difference: a resume after another uncommitted edit is
    another code (X16), and undoing the edit gives the commit back.
    """
    if shutil.which("git") is None:
        pytest.skip("no git here")
    package = tmp_path / "src" / "eoslab"
    shutil.copytree(Path(eoslab.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    _git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("__pycache__/\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "eoslab")
    clean = _identity_of(tmp_path / "src")
    assert clean.startswith(f"eoslab {eoslab.__version__}, git ") and "modified" not in clean
    solver = package / "integrators.py"
    original = solver.read_text()
    solver.write_text(original + "\n# an edit\n")
    first = _identity_of(tmp_path / "src")
    solver.write_text(original + "\n# another edit\n")
    second = _identity_of(tmp_path / "src")
    (package / "scratch.py").write_text("x = 1\n")  # an untracked file counts too
    third = _identity_of(tmp_path / "src")
    assert all(i.startswith(f"{clean}, modified ") for i in (first, second, third))
    assert len({first, second, third}) == 3
    (package / "scratch.py").unlink()
    solver.write_text(original)
    assert _identity_of(tmp_path / "src") == clean


def test_an_eoslab_inside_another_repository_does_not_take_its_commit(tmp_path):
    """An eoslab installed into a virtual environment inside a user's own repository (ignored there):
    that repository's HEAD is not eoslab's commit, so the identity is the version alone.
    """
    if shutil.which("git") is None:
        pytest.skip("no git here")
    git = ["git", "-C", str(tmp_path), "-c", "user.email=a@b", "-c", "user.name=a"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / ".gitignore").write_text("venv/\n")
    subprocess.run([*git, "add", ".gitignore"], check=True)
    subprocess.run([*git, "commit", "-qm", "their project"], check=True)
    shutil.copytree(Path(eoslab.__file__).parent, tmp_path / "venv" / "eoslab")
    code = "from eoslab.provenance import code_identity; print(code_identity())"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(tmp_path / "venv")}, capture_output=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().strip() == f"eoslab {eoslab.__version__}"
