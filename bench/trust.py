"""Trust figures: what the signed index and publisher signatures cost, against the same work without them.

Two registries are started here, alike but for trust, each with the world's resnet18 example:

- `signed`: `nnpm registry keys init` ran before it served (a TUF root, an online key), and
  resnet18 was published with `nnpm publish --sign` by a key `nnpm keys generate` made;
- `plain`: no keys; resnet18 published unsigned.

Figures, the two sides alternating:

- install: each run a fresh NNPM_HOME and `nnpm install -q resnet18 --registry URL` (the CLI
  process). On the signed side that is first contact every time, the worst case: the root is
  pinned, python-tuf's updater fetches and verifies timestamp, snapshot, targets and one bin,
  the packument arrives as a target checked by hash, the publisher signature is verified and
  recorded in the lock.
- load: a fresh Python process doing `nnpm.load("resnet18")` and one run, in each side's env;
  on the signed side `nnpm.load` re-verifies the manifest's signature from the lock (and
  imports `cryptography` for it).

Checked every run: the signed lock records a signer and the home pinned a root; the plain lock
records none and pinned nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.common import PY, Row, child_env, interleaved, log, median, nnpm_cmd, run, timed

# Targets (docs/bench.md, "Trust"): an install through the signed index imports python-tuf, urllib3 (its
# updater's default fetcher, imported even when unused) and cryptography (~70 ms together on this machine),
# makes five or six small loopback GETs and checks a few Ed25519 signatures: ~0.1 s on a 0.33 s install.
INSTALL_LIMIT = 1.35
LOAD_LIMIT = 1.1      # one Ed25519 check and importing cryptography (~20 ms) beside opening a 47 MB model
LOAD = ("import nnpm, numpy as np; m = nnpm.load('resnet18'); "
        "m(np.zeros((1, 3, 224, 224), np.float32))")
SIDES = ("signed", "plain")


def _registry(world, side: str) -> tuple[str, Path]:
    """Start one side's registry and publish resnet18 to it; (url, a home to install into)."""
    flags: list[str] = []
    reg = world.start_registry(f"trust-{side}", flags)
    author = world.tmp(f"trust-{side}-author")
    env = child_env(NNPM_HOME=str(author), NNPM_REGISTRY=reg.url, NNPM_TOKEN=reg.add_user("bench", author))
    publish = [*nnpm_cmd(), "publish", "--no-progress", str(world.examples / "resnet18")]
    if side == "signed":
        run([*nnpm_cmd(), "registry", "keys", "init", "--data", str(reg.data_dir),
             "--root-keys", str(world.tmp("trust-root-keys"))], env=env)
        run([*nnpm_cmd(), "keys", "generate"], env=env)
        publish.insert(-1, "--sign")
    run(publish, env=env)
    return reg.url, world.tmp(f"trust-{side}-user")


def _locked_signer(home: Path) -> str | None:
    lock = json.loads((home / "envs" / "default" / "nnpm.lock").read_text())
    return lock["packages"]["resnet18"].get("signer")


def _install_run(world, side: str, url: str, problems: list[str], last: dict[str, Path], pinned_from: Path | None):
    def once(i: int) -> float:
        home = world.tmp(f"trust-{side}-home")
        if pinned_from is not None and side == "signed":   # this machine met the registry before: its pin only
            shutil.copytree(pinned_from / "trust", home / "trust")
        seconds, _ = timed([*nnpm_cmd(), "install", "-q", "resnet18", "--registry", url],
                           env=child_env(NNPM_HOME=str(home)))
        signer, pinned = _locked_signer(home), any((home / "trust").rglob("root.json"))
        if (signer is not None, pinned) != (side == "signed",) * 2:
            problems.append(f"{side}: the lock's signer is {signer!r} and a root is {'' if pinned else 'not '}pinned")
        last[side] = home
        return seconds
    return once


def _load_run(side: str, last: dict[str, Path]):
    def once(i: int) -> float:
        seconds, _ = timed([PY, "-c", LOAD], env=child_env(NNPM_HOME=str(last[side])))
        return seconds
    return once


def bench(world, runs: int) -> list[Row]:
    """Install and load of resnet18, signed index and signed package against the same unsigned."""
    urls = {side: _registry(world, side)[0] for side in SIDES}
    problems: list[str] = []
    last: dict[str, Path] = {}
    log("trust: nnpm install resnet18 (fresh home) from the signed registry vs the plain one, alternating")
    signed_i, plain_i = interleaved([_install_run(world, s, urls[s], problems, last, None) for s in SIDES], runs)
    log("trust: the same, the signed side's home holding the pin a first contact left (a known registry)")
    signed_p, plain_p = interleaved([_install_run(world, s, urls[s], problems, {}, last["signed"])
                                     for s in SIDES], runs)
    log("trust: nnpm.load('resnet18') + one run, signed install vs plain install, alternating")
    signed_l, plain_l = interleaved([_load_run(s, last) for s in SIDES], runs)
    common = [f"signed: {urls['signed']} (registry keys init, publish --sign); plain: {urls['plain']} (no keys)"]
    rows = [
        Row("trust-install", "install resnet18, cold, signed index (first contact: pin + full refresh) and "
            "signed package", median(signed_i), "s", peer=median(plain_i),
            peer_label="the same install, unsigned registry and package", limit=INSTALL_LIMIT,
            runs=signed_i, peer_runs=plain_i, notes=common + [
                f"ratio per pair {[round(a / b, 2) for a, b in zip(signed_i, plain_i)]}"]),
        Row("trust-install-pinned", "install resnet18, cold store, signed index already pinned (refresh) and "
            "signed package", median(signed_p), "s", peer=median(plain_p),
            peer_label="the same install, unsigned registry and package", limit=INSTALL_LIMIT,
            runs=signed_p, peer_runs=plain_p, notes=common + [
                f"ratio per pair {[round(a / b, 2) for a, b in zip(signed_p, plain_p)]}"]),
        Row("trust-load", "nnpm.load + first run of resnet18 installed signed (signature re-verified from the lock)",
            median(signed_l), "s", peer=median(plain_l), peer_label="the same, installed unsigned",
            limit=LOAD_LIMIT, runs=signed_l, peer_runs=plain_l, notes=common),
    ]
    if problems:
        for row in rows:
            row.check_failed = "; ".join(dict.fromkeys(problems))
    return rows
