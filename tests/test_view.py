"""`nnpm view`: Netron serves the installed model on 127.0.0.1, offline, until Ctrl-C; one line when it cannot."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli import nnpm_command, one_error_line, run_nnpm
from packages import write_package

pytest.importorskip("netron")   # the [view] extra, part of [dev]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An NNPM_HOME with `tiny` 1.0.0 and the pipeline `pipe` (step-a -> step-b) installed from folders (offline)."""
    root = tmp_path_factory.mktemp("view")
    steps = {"step-a": ">=1", "step-b": ">=1"}
    run_nnpm(root / "home", "install", write_package(root / "tiny", name="tiny"),
             write_package(root / "a", name="step-a"), write_package(root / "b", name="step-b"),
             write_package(root / "pipe", name="pipe", dependencies=steps, pipeline=list(steps),
                           connect={"step-b.X": "step-a.Y"}))
    return root / "home"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str = "/") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        conn.close()


def start_view(home: Path, name: str = "tiny") -> tuple[subprocess.Popen, int]:
    """`nnpm view NAME --port P --no-browser` running, once its server answers 200 (or the test fails)."""
    port = free_port()
    argv, environ = nnpm_command(home, "view", name, "--port", str(port), "--no-browser")
    proc = subprocess.Popen(argv, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if get(port)[0] == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"Netron did not answer on port {port} within 20 s: {proc.communicate()}")


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> tuple[str, str]:
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, err
    return out, err


def port_is_free(port: int) -> bool:
    """Nothing listens on the port, and a server may listen there again (as servers do, with SO_REUSEADDR:
    the connections the test made linger in TIME_WAIT)."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True


def test_view_serves_the_installed_graph_in_netron_until_ctrl_c(home: Path) -> None:
    proc, port = start_view(home)
    try:
        status, headers, page = get(port)
        assert b"<title>Netron</title>" in page and b'<meta name="file" content="/data/model.onnx">' in page
        assert headers["Content-Security-Policy"].startswith("default-src 'self'")   # nothing but this server
        installed = home / "envs" / "default" / "pkgs" / "tiny-1.0.0" / "files" / "model.onnx"
        assert get(port, "/data/model.onnx")[2] == installed.read_bytes()
        assert get(port, "/base.js")[0] == 200   # Netron's own assets
    finally:
        out, err = stop(proc)                    # Ctrl-C
    assert out.splitlines() == [f"Netron: http://127.0.0.1:{port}  (Ctrl-C to stop)"], out + err
    assert err == ""
    assert port_is_free(port)


def test_view_stops_cleanly_on_sigterm(home: Path) -> None:
    proc, port = start_view(home)
    stop(proc, signal.SIGTERM)
    assert port_is_free(port)


def test_a_pipeline_is_shown_fused(home: Path) -> None:
    import onnx

    proc, port = start_view(home, "pipe")
    try:
        graph = onnx.load_from_string(get(port, "/data/model.onnx")[2])
    finally:
        stop(proc)
    assert {t.name for t in graph.graph.initializer} == {"step-a/W", "step-b/W"}   # both steps, in one graph


def test_the_page_draws_the_graph_and_nothing_leaves_the_machine(home: Path, browser_context) -> None:
    proc, port = start_view(home)
    try:
        page = browser_context.new_page()
        requests, console = [], []
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: console.append(m.text))
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("g.node", timeout=10_000)   # the Add node of tiny's graph, drawn
        assert "Add" in page.locator("body").inner_text()
        assert "cookies" not in page.locator("body").inner_text()   # no banner about reports that cannot leave
    finally:
        stop(proc)
    assert [u for u in requests if not u.startswith(f"http://127.0.0.1:{port}/")] == []
    refused = [m for m in console if "analytics" in m or "ipinfo" in m]
    assert all("Content Security Policy" in m for m in refused), refused


def test_view_of_a_package_not_installed_is_one_line(home: Path) -> None:
    line = one_error_line(run_nnpm(home, "view", "absent", "--no-browser", check=False))
    assert "absent is not installed" in line and "nnpm install absent" in line


def test_view_on_a_port_in_use_is_one_line(home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_error_line(run_nnpm(home, "view", "tiny", "--port", str(port), "--no-browser", check=False))
    assert f"port {port} on 127.0.0.1 is in use" in line


def test_view_without_netron_names_the_extra(home: Path, tmp_path: Path) -> None:
    (tmp_path / "netron.py").write_text("raise ImportError('No module named netron')\n")
    proc = run_nnpm(home, "view", "tiny", "--no-browser", env={"PYTHONPATH": str(tmp_path)}, check=False)
    assert one_error_line(proc) == "error: nnpm view needs Netron: pip install 'nnpm[view]'"


def test_the_cli_imports_netron_only_inside_nnpm_view() -> None:
    code = "import sys, nnpm.cli; print('netron' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
