"""Wheels (PEP 427) written with zipfile, for the peers that install Python packages (pip, uv)."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def record_hash(data: bytes) -> str:
    """A RECORD line's hash: sha256, urlsafe base64 without padding."""
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def write_wheel(out: Path, name: str, version: str, summary: str, files: dict[str, bytes]) -> Path:
    """`name`-`version`-py3-none-any.whl in `out` holding `files` (paths inside the wheel), deflated as
    bdist_wheel writes them: that is what people ship today."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    content = dict(files)
    content[f"{dist_info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                        f"Summary: {summary}\n").encode()
    content[f"{dist_info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: nnpm-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = "".join(f"{p},{record_hash(d)},{len(d)}\n" for p, d in content.items()) + f"{dist_info}/RECORD,,\n"
    content[f"{dist_info}/RECORD"] = record.encode()
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for path, data in content.items():   # RECORD last, as the spec recommends
            z.writestr(zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0)), data, compress_type=zipfile.ZIP_DEFLATED)
    return wheel
