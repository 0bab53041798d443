"""A pipeline's installed steps: which package each step is, checked against the pipeline's ranges, and the wiring."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nnpm.errors import PipelineError
from nnpm.format.manifest import Signature
from nnpm.format.wiring import Wiring, plan, signature

if TYPE_CHECKING:
    from nnpm.install.env import Environment, InstalledPackage


def installed_steps(pkg: "InstalledPackage", env: "Environment", verify: bool) -> dict[str, "InstalledPackage"]:
    """The installed package of every step, checked against the pipeline's specifiers."""
    deps = pkg.manifest.project.dependencies
    out = {}
    for step in pkg.manifest.project.pipeline.steps:
        installed = env.get(step)
        if not deps[step].contains(installed.version, prereleases=True):
            raise PipelineError(f"{pkg.name} needs {step}{deps[step]}, but {step} {installed.version} is installed",
                                hint=f"run 'nnpm install {pkg.name}' to resolve its steps again")
        if verify:
            installed.verify()
        out[step] = installed
    return out


def step_signature(pkg: "InstalledPackage", env: "Environment") -> Signature:
    """A package's signature; for a nested pipeline, the one its wiring exposes."""
    if pkg.manifest.signature is not None:
        return pkg.manifest.signature
    steps = installed_steps(pkg, env, verify=False)
    sigs = {s: step_signature(p, env) for s, p in steps.items()}
    return signature(plan(pkg.manifest.project.pipeline, sigs), sigs)


def wiring_of(pkg: "InstalledPackage", env: "Environment") -> tuple[Wiring, dict[str, Signature]]:
    """The checked wiring of a pipeline and its steps' signatures."""
    steps = installed_steps(pkg, env, verify=False)
    sigs = {s: step_signature(p, env) for s, p in steps.items()}
    return plan(pkg.manifest.project.pipeline, sigs), sigs
