"""`oci://HOST[:PORT]/REPO[:TAG|@sha256:HEX]`: where an artifact lives, parsed once.

Plain HTTP is used only for a loopback host or when `--insecure` is given, as docker does;
everything else is HTTPS. A trailing slash (`oci://HOST/NAMESPACE/`) names a namespace: the
package index whose repositories are package names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nnpm.errors import SpecError

SCHEME = "oci://"
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
                   r"|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?\Z")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})\Z")
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
_EXAMPLE = "e.g. oci://ghcr.io/org/resnet18:1.0.0 or oci://127.0.0.1:5000/models/resnet18@sha256:..."


def is_oci(text: object) -> bool:
    """Whether a spec names an OCI artifact."""
    return isinstance(text, str) and text.startswith(SCHEME)


@dataclass(frozen=True)
class OciRef:
    """One repository (and optionally a tag or digest) on one OCI registry."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None          # hex, for `@sha256:...`
    insecure: bool = False             # --insecure: plain HTTP to a host that is not loopback

    @property
    def plain_http(self) -> bool:
        """HTTP instead of HTTPS: loopback registries, or when asked."""
        return self.insecure or self.host.rsplit(":", 1)[0] in _LOOPBACK or self.host.startswith("[::1]")

    @property
    def reference(self) -> str | None:
        """What names the manifest: the digest when given, else the tag."""
        return f"sha256:{self.digest}" if self.digest else self.tag

    def child(self, name: str) -> "OciRef":
        """The repository `name` inside this namespace (for the package index)."""
        return OciRef(self.host, f"{self.repository}/{name}" if self.repository else name, insecure=self.insecure)

    def __str__(self) -> str:
        tail = f"@sha256:{self.digest}" if self.digest else (f":{self.tag}" if self.tag else "")
        return f"{SCHEME}{self.host}/{self.repository}{tail}"


def check_tag(tag: str) -> str:
    """A valid OCI tag, or SpecError saying what is wrong."""
    if "+" in tag:
        raise SpecError(f"OCI tag {tag!r} holds '+', which OCI tags cannot hold",
                        hint=f"write it with '_' ({tag.replace('+', '_')}), as nnpm tags local versions")
    if not _TAG.match(tag):
        raise SpecError(f"{tag!r} is not an OCI tag", hint="up to 128 letters, digits, '_', '.' and '-'")
    return tag


def parse_ref(text: str, *, insecure: bool = False, namespace: bool = False) -> OciRef:
    """Parse an `oci://` reference (`namespace`: a trailing-slash index prefix, no tag)."""
    if not is_oci(text):
        raise SpecError(f"{text[:200]!r} is not an oci:// reference", hint=_EXAMPLE)
    rest = text[len(SCHEME):]
    host, slash, path = rest.partition("/")
    if not slash or not _HOST.match(host):
        raise SpecError(f"{text[:200]!r} names no registry host", hint=_EXAMPLE)
    tag = digest = None
    if "@" in path:
        path, _, ref = path.partition("@")
        found = _DIGEST.match(ref)
        if not found:
            raise SpecError(f"{ref[:80]!r} is not a sha256 digest", hint="@sha256: and 64 lowercase hex digits")
        digest = found.group(1)
    else:
        last = path.rsplit("/", 1)[-1]
        if ":" in last:
            path, _, tag = path.rpartition(":")
            check_tag(tag)
    if namespace:
        path = path.rstrip("/")
    components = path.split("/") if path else []
    if (not components and not namespace) or not all(_COMPONENT.match(c) for c in components):
        raise SpecError(f"{text[:200]!r}: {path[:100]!r} is not an OCI repository name",
                        hint="lowercase letters, digits and '.', '_', '-' separators, in '/'-separated parts")
    if namespace and (tag or digest):
        raise SpecError(f"{text[:200]!r}: a package index names a namespace, without a tag",
                        hint="e.g. oci://ghcr.io/org/models/")
    return OciRef(host, path, tag, digest, insecure)
