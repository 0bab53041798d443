"""The real `nnpm` CLI on bad input: one `error:` line on stderr, exit 1, no traceback, nothing written."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import modelkit as mk
import pytest
from cli import run_nnpm
from packages import DEMO, write_package

PLAIN = {"NO_COLOR": "1", "COLUMNS": "200"}  # no colour codes, no line wrapping


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root with the sha256 of its bytes (or 'dir' / 'link -> target')."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link -> " + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_clean_failure(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


@pytest.fixture
def work(tmp_path) -> tuple[Path, Path]:
    """(a working folder the CLI runs in, NNPM_HOME)."""
    (tmp_path / "work").mkdir()
    return tmp_path / "work", tmp_path / "home"


# ---------------------------------------------------------------- pack

def _external(location: str):
    def make(folder: Path) -> None:
        write_package(folder, **DEMO, model=mk.linear(), location="weights.bin")
        mk.rewrite_external(folder / "model.onnx", location=location)
    return make


def _symlinked_model(folder: Path) -> None:
    write_package(folder, **DEMO, model=mk.linear())
    os.replace(folder / "model.onnx", folder.parent / "real.onnx")
    os.symlink(folder.parent / "real.onnx", folder / "model.onnx")


def _random_bytes(folder: Path) -> None:
    write_package(folder, **DEMO, model=mk.linear())
    (folder / "model.onnx").write_bytes(os.urandom(3000))


def _truncated(folder: Path) -> None:
    write_package(folder, **DEMO, model=mk.linear(16, 16))
    raw = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(raw[: len(raw) // 2])


def _toml(**kw):
    def make(folder: Path) -> None:
        write_package(folder, **(DEMO | kw), model=mk.linear())
    return make


PACK_CASES = {
    "external-parent": (_external("../../etc/passwd"), "outside the package"),
    "external-absolute": (_external("/etc/passwd"), "outside the package"),
    "external-dotdot-inside": (_external("sub/../../x"), "outside the package"),
    "symlinked-model": (_symlinked_model, "symbolic link"),
    "random-bytes": (_random_bytes, "not a readable ONNX model"),
    "truncated": (_truncated, "model.onnx"),
    "include-leaves": (_toml(extra_toml='[files]\ninclude = ["../outside.txt"]\n'), "files.include"),
    "include-absolute": (_toml(extra_toml='[files]\ninclude = ["/etc/passwd"]\n'), "files.include"),
    "invalid-version": (_toml(version="1.0.0-beta.x!"), "package.version"),
    "invalid-name": (_toml(name="-bad name"), "package.name"),
    "unknown-key": (_toml(extra_toml="[tool]\nx = 1\n"), "tool"),
    "unknown-package-key": (_toml(package_extra='summary = "x"\n'), "package.summary"),
    "invalid-toml": (_toml(extra_toml="[files\n"), "not valid TOML"),
    "checker-fails": (lambda f: write_package(f, **DEMO, model=mk.undefined_input()), "checker"),
}


@pytest.mark.parametrize("case", list(PACK_CASES))
def test_pack_bad_input_is_one_error_line_and_writes_nothing(work, case):
    cwd, home = work
    make, fragment = PACK_CASES[case]
    make(cwd / "pkg")
    (cwd / "outside.txt").write_text("outside")
    before = snapshot(cwd)
    line = assert_clean_failure(run_nnpm(home, "pack", "pkg", cwd=cwd, env=PLAIN, check=False))
    assert fragment in line
    assert snapshot(cwd) == before
    assert not (cwd / "pkg" / "dist").exists()


def test_pack_bad_input_with_output_path_writes_nothing(work):
    cwd, home = work
    _external("../../etc/passwd")(cwd / "pkg")
    before = snapshot(cwd)
    assert_clean_failure(run_nnpm(home, "pack", "pkg", "-o", "out/demo-1.0.0.nnpm", cwd=cwd, env=PLAIN,
                                  check=False))
    assert snapshot(cwd) == before


@pytest.mark.parametrize("make", [_external("."), _toml(extra_toml='[files]\ninclude = ["model.onnx/x"]\n')],
                         ids=["external-dot", "include-under-a-file"])
def test_pack_odd_paths_are_one_error_line(work, make):
    cwd, home = work
    make(cwd / "pkg")
    assert_clean_failure(run_nnpm(home, "pack", "pkg", cwd=cwd, env=PLAIN, check=False))


def test_pack_good_folder_succeeds(work):
    cwd, home = work
    write_package(cwd / "pkg", **DEMO, model=mk.linear(), location="weights.bin")
    result = run_nnpm(home, "pack", "pkg", cwd=cwd, env=PLAIN, check=False)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (cwd / "pkg" / "dist").iterdir()) == ["demo-1.0.0.manifest.json",
                                                                          "demo-1.0.0.nnpm"]


# ---------------------------------------------------------------- init

def test_init_from_a_missing_file_writes_nothing(work):
    cwd, home = work
    line = assert_clean_failure(run_nnpm(home, "init", "pkg", "--from", "missing.onnx", cwd=cwd, env=PLAIN,
                                         check=False))
    assert "missing.onnx" in line
    assert snapshot(cwd) == {}


def test_init_into_a_folder_with_nnpm_toml_writes_nothing(work):
    cwd, home = work
    mk.save(mk.linear(), cwd / "net.onnx", location="net.bin")
    (cwd / "pkg").mkdir()
    (cwd / "pkg" / "nnpm.toml").write_text("# mine\n")
    before = snapshot(cwd)
    line = assert_clean_failure(run_nnpm(home, "init", "pkg", "--from", "net.onnx", cwd=cwd, env=PLAIN, check=False))
    assert "exists already" in line
    assert snapshot(cwd) == before


@pytest.mark.parametrize("make", [
    lambda p: p.write_bytes(os.urandom(1000)),
    lambda p: mk.save(mk.undefined_input(), p),
], ids=["random-bytes", "checker-fails"])
def test_init_from_a_bad_model_writes_nothing(work, make):
    cwd, home = work
    make(cwd / "net.onnx")
    before = snapshot(cwd)
    assert_clean_failure(run_nnpm(home, "init", "pkg", "--from", "net.onnx", cwd=cwd, env=PLAIN, check=False))
    assert snapshot(cwd) == before


def test_init_then_pack_succeeds(work):
    cwd, home = work
    mk.save(mk.linear(), cwd / "net.onnx", location="net.bin")
    result = run_nnpm(home, "init", "pkg", "--from", "net.onnx", cwd=cwd, env=PLAIN, check=False)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(cwd / "pkg")) == ["README.md", "model.onnx", "net.bin", "nnpm.toml", "tests"]
    result = run_nnpm(home, "pack", "pkg", cwd=cwd, env=PLAIN, check=False)
    assert result.returncode == 0, result.stderr
    assert (cwd / "pkg" / "dist" / "pkg-0.1.0.nnpm").is_file()   # named after its folder


# ---------------------------------------------------------------- --verbose, --help, lazy imports

def test_verbose_shows_the_traceback(work):
    cwd, home = work
    _toml(version="1.0.0-beta.x!")(cwd / "pkg")
    result = run_nnpm(home, "--verbose", "pack", "pkg", cwd=cwd, env=PLAIN, check=False)
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "ManifestError" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: ")
    assert not (cwd / "pkg" / "dist").exists()


def test_help_exits_0(work):
    cwd, home = work
    result = run_nnpm(home, "--help", cwd=cwd, env=PLAIN, check=False)
    assert result.returncode == 0, result.stderr
    assert "init" in result.stdout and "pack" in result.stdout
    assert result.stderr == ""


def test_importing_the_cli_does_not_import_heavy_modules():
    heavy = ["onnx", "onnxruntime", "fastapi", "numpy"]
    code = f"import sys, nnpm.cli; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_cli_process_keeps_httpx_own_command_line_client_out():
    # httpx imports its CLI (click, rich, pygments) when click is installed; nnpm's process never runs it
    code = ("import sys, nnpm.cli, httpx; "
            "print(sorted(m for m in ('rich', 'pygments', 'click') if m in sys.modules), callable(httpx.main))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] True"
