"""`make demo`: build and pack the examples, run a registry, publish, install and run them.

Every step is a real `nnpm` command, echoed before it runs, so the output is a tour.
The registry and both NNPM_HOMEs live in a temporary folder that is removed at the end
(pass --keep to leave the registry running and the folder in place).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
NNPM = [sys.executable, "-m", "nnpm"]
# Leaves first: a pipeline's steps must be on the registry before the pipeline.
PUBLISH_ORDER = ["digits", "digits-preprocess", "resnet18", "imagenet-preprocess", "topk",
                 "digits-classifier", "imagenet-classifier"]


def step(title: str) -> None:
    """Print a section heading."""
    print(f"\n== {title}", flush=True)


def nnpm(*args: str, home: Path, capture: bool = False, **env: str) -> str:
    """Run one nnpm command with NNPM_HOME=home, echoing it; exit on failure."""
    print("$ nnpm " + " ".join(args), flush=True)
    proc = subprocess.run([*NNPM, *args], env={**os.environ, "NNPM_HOME": str(home), **env},
                          text=True, capture_output=capture)
    if proc.returncode != 0:
        if capture:
            sys.stderr.write(proc.stderr)
        sys.exit(f"demo: 'nnpm {' '.join(args)}' failed")
    return proc.stdout if capture else ""


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(data: Path, port: int, home: Path) -> subprocess.Popen:
    """Start `nnpm registry serve` and wait until it answers."""
    print(f"$ nnpm registry serve --data {data} --port {port} &", flush=True)
    log = open(data.parent / "registry.log", "w")
    proc = subprocess.Popen([*NNPM, "registry", "serve", "--data", str(data), "--port", str(port)],
                            env={**os.environ, "NNPM_HOME": str(home)}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        if proc.poll() is not None:
            sys.exit(f"demo: the registry exited; see {log.name}")
        try:
            if httpx.get(url + "/api/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    sys.exit("demo: the registry did not start within 20 s")


def classify_digits(home: Path) -> None:
    """Classify held-out digits through the installed pipeline, in a fresh interpreter."""
    code = """
import numpy as np, nnpm
from examples.digits import held_out
x, y = held_out()
clf = nnpm.load("digits-classifier")
pred = clf(pixels=x[:12])["label"]
print("predicted:", " ".join(map(str, pred)))
print("true:     ", " ".join(map(str, y[:12])))
acc = float(np.mean(clf(pixels=x)["label"] == y))
print(f"held-out accuracy through the pipeline: {acc:.4f} on {len(y)} images")
"""
    print("$ python -c 'clf = nnpm.load(\"digits-classifier\"); clf(pixels=held_out_digits)'", flush=True)
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "NNPM_HOME": str(home)},
                   cwd=ROOT, check=True)


def compare_variants(home: Path) -> None:
    """Run resnet18 from both environments on one image, here, one thread each: speed-up and drift."""
    code = """
import statistics, time, numpy as np, onnxruntime as ort, nnpm
opts = ort.SessionOptions(); opts.intra_op_num_threads = opts.inter_op_num_threads = 1
ref, fast = (nnpm.load("resnet18", env=e, session_options=opts) for e in ("default", "fast"))
x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
def median_ms(m):
    m(x)
    return statistics.median([(lambda t: (m(x), time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(9)]) * 1e3
a, b = median_ms(ref), median_ms(fast)
y, z = ref(x), fast(x)
print(f"reference {a:.1f} ms, {fast.variant} {b:.1f} ms on this machine: {a / b:.2f}x; "
      f"drift (rel L2) {np.linalg.norm(z - y) / np.linalg.norm(y):.4f}")
"""
    print("$ python -c 'nnpm.load(\"resnet18\", env=...)' for env in default, fast", flush=True)
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "NNPM_HOME": str(home)}, cwd=ROOT, check=True)


def main() -> int:
    """Run the demo."""
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the registry running and its data in place")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nnpm-demo-"))
    examples, packs = ROOT / "build" / "examples", work / "packs"
    author, user = work / "author-home", work / "user-home"
    step("build the example models")
    subprocess.run([sys.executable, "-m", "examples.build", str(examples)], check=True, cwd=ROOT)
    step("pack each example (validate, read the signature, hash every file)")
    for name in PUBLISH_ORDER:
        nnpm("pack", str(examples / name), "-o", str(packs / f"{name}.nnpm"), home=author)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    step("sign the registry's index (TUF): offline root keys, an online key for every change")
    nnpm("registry", "keys", "init", "--data", str(work / "registry"), "--root-keys", str(work / "root-keys"),
         home=author)
    step(f"start a registry on {url} (SQLite + a blob folder)")
    server = start_registry(work / "registry", port, author)
    try:
        token = nnpm("registry", "user", "add", "demo", "--data", str(work / "registry"),
                     home=author, capture=True).strip().splitlines()[-1]
        nnpm("login", "--registry", url, "--token", token, home=author)
        step("make a publisher key, then publish the examples signed with it")
        nnpm("keys", "generate", home=author)
        for name in PUBLISH_ORDER:
            nnpm("publish", "--sign", str(examples / name), home=author)
        step("install from the registry into a fresh NNPM_HOME: the index and every signature verified")
        nnpm("install", "resnet18", "digits-classifier", "imagenet-classifier", "--registry", url,
             "--require-signatures", home=user)
        nnpm("list", home=user)
        nnpm("info", "digits", "--registry", url, home=user)
        step("variants: the registry measured each precision of resnet18 (drift, latency) at publish")
        nnpm("info", "resnet18", "--registry", url, home=user)
        print(f"(the same table is on the model card: {url}/packages/resnet18)")
        step("install the fastest variant within a drift of 0.05 into a second environment")
        # Random weights drift more under int8 than trained ones, hence 0.05 rather than the default 0.01.
        nnpm("install", "--env", "fast", "resnet18", "--prefer", "speed", "--max-drift", "0.05",
             "--registry", url, home=user)
        nnpm("list", "--env", "fast", home=user)
        compare_variants(user)
        step("run: classify held-out digits through nnpm.load")
        classify_digits(user)
        step("done")
        print(f"model cards: {url}/  (e.g. {url}/packages/resnet18)")
        if args.keep:
            print(f"registry still running (pid {server.pid}); data in {work}")
            return 0
    finally:
        if not args.keep:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=10)
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
