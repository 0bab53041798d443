"""Which variant of a package to install: by provider, then by the policy, from the registry's measurements.

The reference is the default. `--prefer speed|size` takes the fastest or smallest variant
whose measured drift (relative L2 against the reference) is within `max_drift`; a variant
the registry did not measure is never preferred, since nnpm chooses from figures, not
from claims. `--variant NAME` pins one. Providers come from this machine's onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nnpm.errors import RequirementError
from nnpm.format.measured import variant_rows
from nnpm.format.variants import REFERENCE

if TYPE_CHECKING:
    from nnpm.format.manifest import Manifest

DEFAULT_MAX_DRIFT = 0.01


@dataclass(frozen=True)
class Policy:
    """How to choose: `prefer` reference|speed|size, the largest drift allowed, or one pinned variant."""

    prefer: str = "reference"
    max_drift: float = DEFAULT_MAX_DRIFT
    pin: str | None = None

    @property
    def explicit(self) -> bool:
        """True when the user asked for something other than the default."""
        return self.prefer != "reference" or self.pin is not None


@dataclass(frozen=True)
class Choice:
    """The chosen variant and why, in words for the lock and the summary."""

    variant: str
    reason: str


def available_providers() -> list[str]:
    """The execution providers this machine's onnxruntime offers."""
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def choose(manifest: "Manifest", measured: dict | None, policy: Policy, providers: list[str] | None = None,
           *, pinned_here: bool = True) -> Choice:
    """The variant of `manifest` to install under `policy` (`pinned_here`: the pin applies to this package)."""
    names = manifest.variant_names()
    if len(names) == 1:
        return Choice(REFERENCE, "")
    if policy.prefer == REFERENCE and not (policy.pin and pinned_here):   # needs no onnxruntime import
        others = ", ".join(v for v in names if v != REFERENCE)
        return Choice(REFERENCE, f"the default; also published: {others} (compare them with 'nnpm info {manifest.name}')")
    providers = available_providers() if providers is None else providers
    usable = [v for v in names if v == REFERENCE or set(manifest.project.variants[v].providers) <= set(providers)]
    if policy.pin and pinned_here:
        return _pinned(manifest, policy.pin, usable, names)
    return _preferred(manifest, measured, policy, usable)


def keep_or_choose(manifest: "Manifest", measured: dict | None, policy: Policy, previous: Choice | None, *,
                   pinned_here: bool = True) -> Choice:
    """The variant chosen before, while the package still has it and the policy asks for nothing else; else `choose`."""
    if not policy.explicit and previous is not None and previous.variant in manifest.variant_names():
        return previous
    return choose(manifest, measured, policy, pinned_here=pinned_here)


def _pinned(manifest: "Manifest", pin: str, usable: list[str], names: list[str]) -> Choice:
    if pin not in names:
        raise RequirementError(f"{manifest.name} {manifest.version} has no variant {pin!r}",
                               hint="its variants: " + ", ".join(names))
    if pin not in usable:
        needs = ", ".join(manifest.project.variants[pin].providers)
        raise RequirementError(f"variant {pin!r} of {manifest.name} needs {needs}, which this onnxruntime does not offer",
                               hint="install the onnxruntime build that ships it, or choose another variant")
    return Choice(pin, "pinned with --variant")


def _preferred(manifest: "Manifest", measured: dict | None, policy: Policy, usable: list[str]) -> Choice:
    rows = {row.variant: row for row in variant_rows(manifest, measured)}   # the card's and info's figures
    scored = []
    for name in usable:
        row = rows[name]
        drift = 0.0 if name == REFERENCE else row.rel_l2
        if drift is None or drift > policy.max_drift or (policy.prefer == "speed" and row.latency_ms is None):
            continue
        key = row.latency_ms if policy.prefer == "speed" else row.bytes
        scored.append((key, name != REFERENCE, name, drift))
    if not scored:
        return Choice(REFERENCE, f"no measured variant is within drift {policy.max_drift:g}")
    _, _, name, drift = min(scored)
    if name == REFERENCE:
        return Choice(REFERENCE, f"no variant is {'faster' if policy.prefer == 'speed' else 'smaller'} "
                                 f"within drift {policy.max_drift:g}")
    row = rows[name]
    if policy.prefer == "speed":
        gain = f"{row.speedup:.1f}x faster" if row.speedup else "fastest"
    else:
        gain = f"{row.shrink:.1f}x smaller" if row.shrink else "smallest"
    return Choice(name, f"--prefer {policy.prefer}: {gain} than the reference as measured by the registry, "
                        f"drift (rel L2) {drift:.2g} within {policy.max_drift:g}")
