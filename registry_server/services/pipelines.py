"""A pipeline's steps as this registry holds them: the newest published version matching each range.

At publish, `wiring_signature` checks the wiring against those steps and gives the
pipeline's own signature, stored with the version (`versions.signature_json`). A card
asks `card_steps` which version each range picks now and how many bytes installing the
pipeline brings (its own files plus its steps', nested pipelines included, each package
once). Reads only; manifests come from the per-process cache (services/catalog.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from packaging.specifiers import SpecifierSet
from sqlalchemy.orm import Session

from nnpm.errors import NnpmError, PipelineError
from nnpm.format.manifest import Manifest, Signature
from nnpm.format.wiring import MAX_NESTING, check_pipeline
from registry_server.db.tables import Release
from registry_server.services.catalog import find_package, manifest_of, versions_of


def newest_step(session: Session, name: str, spec: SpecifierSet) -> Release | None:
    """The newest non-yanked version of `name` that `spec` allows (what the resolver would pick), or None."""
    pkg = find_package(session, name)
    rows = [r for r in versions_of(session, pkg) if not r.yanked and spec.contains(r.version)] if pkg else []
    return rows[-1] if rows else None


def wiring_signature(session: Session, manifest: Manifest, *, strict: bool = True) -> Signature | None:
    """The pipeline's signature from the wiring of its newest matching steps; PipelineError when they do not wire.

    A step with no matching version is a PipelineError naming it when `strict`, else the answer is None."""
    def lookup(step: str, spec: SpecifierSet) -> Manifest | None:
        row = newest_step(session, step, spec)
        if row is None:
            if strict:
                raise PipelineError(f"step {step}{spec} has no published version on this registry",
                                    hint="publish the pipeline's steps before the pipeline")
            return None
        return manifest_of(row)

    return check_pipeline(manifest.project, lookup)


def signature_json(signature: Signature | None) -> str | None:
    """The stored form of a signature: compact JSON, sorted keys."""
    return json.dumps(signature.to_dict(), sort_keys=True, separators=(",", ":")) if signature else None


def stored_signature(row: Release) -> dict | None:
    """The signature stored with a pipeline version, in its JSON form (None for models and older versions)."""
    return json.loads(row.signature_json) if row.signature_json else None


def card_signature(session: Session, row: Release, manifest: Manifest) -> Signature | None:
    """What a card shows as inputs and outputs: a model's own; a pipeline's as stored at publish, else
    (published before the registry stored it) from the wiring of the steps its ranges pick now."""
    if manifest.project.pipeline is None:
        return manifest.signature
    stored = stored_signature(row)
    if stored is not None:
        return Signature.from_dict(stored, file=None)
    try:
        return wiring_signature(session, manifest, strict=False)
    except NnpmError:  # its steps no longer wire together: the card shows no signature
        return None


@dataclass(frozen=True)
class Dependency:
    """One dependency as a card lists it: its range, the version that range picks now, and its bytes."""

    name: str
    spec: str
    version: str | None  # None: nothing on this registry matches
    size: int | None     # the step's files, its own steps' too when it is a pipeline


@dataclass(frozen=True)
class CardSteps:
    """A package's dependencies for its card (a pipeline's steps first, in step order) and what they weigh."""

    dependencies: list[Dependency]
    steps_size: int                 # bytes of every package the pipeline's steps bring, each counted once
    unresolved: tuple[str, ...]     # steps with no matching version here (not counted)


def card_steps(session: Session, manifest: Manifest) -> CardSteps:
    """The dependencies in step order (then any others, by name), the versions they pick now and their sizes."""
    project = manifest.project
    order = list(project.pipeline.steps) if project.pipeline else []
    order += sorted(d for d in project.dependencies if d not in order)
    sizes: dict[str, int] = {}
    unresolved: list[str] = []
    deps = []
    for name in order:
        spec = project.dependencies[name]
        row = newest_step(session, name, spec)
        size = None
        if row is not None and project.pipeline and name in project.pipeline.steps:
            size = _bring(session, name, manifest_of(row), sizes, unresolved, 1)
        elif row is None and project.pipeline and name in project.pipeline.steps:
            unresolved.append(name)
        deps.append(Dependency(name, str(spec) or "any", row.version if row else None, size))
    return CardSteps(deps, sum(sizes.values()), tuple(dict.fromkeys(unresolved)))


def _bring(session: Session, name: str, manifest: Manifest, sizes: dict[str, int], unresolved: list[str],
           depth: int) -> int:
    """Record the bytes of `name` (and, for a pipeline, of its steps) in `sizes`; the bytes it brings."""
    sizes.setdefault(name, manifest.total_size)
    total = manifest.total_size
    pipeline = manifest.project.pipeline
    if pipeline is None or depth > MAX_NESTING:
        return total
    for step in pipeline.steps:
        row = newest_step(session, step, manifest.project.dependencies[step])
        if row is None:
            unresolved.append(step)
            continue
        total += _bring(session, step, manifest_of(row), sizes, unresolved, depth + 1)
    return total
