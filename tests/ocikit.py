"""Helpers for the OCI tests: oras-py as the independent client, and nnpm in a subprocess."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from cli import ROOT, child_env, one_error_line, run_nnpm

from nnpm.format.oci import ARTIFACT_TYPE, CONFIG, FILEPATH, IMAGE_MANIFEST

PUSHED = re.compile(r"^pushed (\S+) (\S+) to oci://(\S+):(\S+) \(sha256:([0-9a-f]{64})\)$", re.M)
TITLE = "org.opencontainers.image.title"
EXAMPLES = ("imagenet-preprocess", "resnet18", "topk", "imagenet-classifier")
# `nnpm push/install` against the htpasswd registry takes ~1.5 s; oras-py's own retries (up to 131 s of
# sleeps, an auth error included) are off in nnpm's transport, and this bound would catch them coming back.
AUTH_TIMEOUT = 30


# -- oras-py as the independent client -----------------------------------------------------------------
class Oras:
    """oras-py on one test registry: manifests and blobs read and written by hand."""

    def __init__(self, reg, scratch: Path) -> None:
        import oras.client

        self.reg, self.scratch = reg, scratch
        self.client = oras.client.OrasClient(hostname=reg.host, insecure=True,
                                             auth_backend="basic" if reg.username else "token")
        self.client.session.trust_env = False  # no proxy for 127.0.0.1
        if reg.username:
            self.client.auth.set_basic_auth(reg.username, reg.password)

    def raw_manifest(self, repo: str, ref: str) -> bytes:
        resp = self.client.do_request(f"{self.reg.url}/v2/{repo}/manifests/{ref}", headers={"Accept": IMAGE_MANIFEST})
        assert resp.status_code == 200, resp.text
        return resp.content

    def blob(self, repo: str, digest: str) -> bytes:
        resp = self.client.get_blob(f"{self.reg.host}/{repo}", digest)
        assert resp.status_code == 200, resp.text
        return resp.content

    def put_blob(self, repo: str, data: bytes, media_type: str, path: str | None = None) -> dict:
        """Upload `data`; its descriptor (annotated with `path` as the ModelPack filepath)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        file = self.scratch / digest.replace(":", "-")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
        layer = {"mediaType": media_type, "digest": digest, "size": len(data)}
        resp = self.client.upload_blob(str(file), f"{self.reg.host}/{repo}", layer)
        assert resp.status_code in (200, 201, 202), resp.text
        return layer | ({"annotations": {FILEPATH: path}} if path else {})

    def put_manifest(self, repo: str, tag: str, manifest: dict) -> str:
        """PUT an image manifest as it is (artifactType included, which oras-py's push leaves out); its digest."""
        raw = json.dumps(manifest, indent=2).encode()
        resp = self.client.do_request(f"{self.reg.url}/v2/{repo}/manifests/{tag}", "PUT", data=raw,
                                      headers={"Content-Type": IMAGE_MANIFEST})
        assert resp.status_code == 201, resp.text
        return hashlib.sha256(raw).hexdigest()


def modelpack(oras_: Oras, repo: str, files: list[tuple[str, str, bytes]], descriptor: dict, **config_extra) -> dict:
    """A ModelPack image manifest as another tool writes it: (path, media type, bytes) layers and a config."""
    layers = [oras_.put_blob(repo, data, media, path) for path, media, data in files]
    config = {"descriptor": descriptor, "config": {"format": "onnx"},
              "modelfs": {"type": "layers", "diffIds": [layer["digest"] for layer in layers]}} | config_extra
    config_layer = oras_.put_blob(repo, json.dumps(config).encode(), CONFIG)
    return {"schemaVersion": 2, "mediaType": IMAGE_MANIFEST, "artifactType": ARTIFACT_TYPE,
            "config": config_layer, "layers": layers}


# -- nnpm in a subprocess ------------------------------------------------------------------------------
def push(home: Path, target: str, source: Path, **kw) -> list[tuple[str, str, str, str, str]]:
    """`nnpm push`; its `pushed NAME VER to oci://HOST/REPO:TAG (sha256:HEX)` lines, parsed."""
    return PUSHED.findall(run_nnpm(home, "push", target, source, **kw).stdout)


def listed(home: Path) -> list[dict]:
    return json.loads(run_nnpm(home, "list", "--json").stdout)["packages"]


def run_installed(home: Path, name: str, feeds: dict[str, np.ndarray], scratch: Path) -> dict[str, np.ndarray]:
    """`nnpm.load(name).run(feeds)` in a Python of its own with NNPM_HOME=home: the outputs."""
    scratch.mkdir(parents=True, exist_ok=True)
    np.savez(scratch / "in.npz", **feeds)
    code = ("import sys, numpy as np, nnpm\nfeeds = dict(np.load(sys.argv[2]))\n"
            "np.savez(sys.argv[3], **nnpm.load(sys.argv[1]).run(feeds))\n")
    env = {k: v for k, v in child_env(NNPM_HOME=str(home)).items() if not k.startswith("NNPM_") or k == "NNPM_HOME"}
    proc = subprocess.run([sys.executable, "-c", code, name, str(scratch / "in.npz"), str(scratch / "out.npz")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return dict(np.load(scratch / "out.npz"))


def assert_refused(home: Path, *args: str, says: str, **kw) -> str:
    """One `error:` line naming `says`, and nothing installed."""
    line = one_error_line(run_nnpm(home, *args, check=False, **kw))
    assert says in line, line
    assert listed(home) == []
    return line

