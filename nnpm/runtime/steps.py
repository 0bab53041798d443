"""A pipeline's installed steps: which package each step is, checked against the pipeline's ranges, and the wiring."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nnpm.errors import PipelineError
from nnpm.format.manifest import Signature
from nnpm.format.project import step_graph, step_package
from nnpm.format.wiring import Wiring, graph_signature, plan, signature

if TYPE_CHECKING:
    from nnpm.install.env import Environment, InstalledPackage


def installed_steps(pkg: "InstalledPackage", env: "Environment", verify: bool) -> dict[str, "InstalledPackage"]:
    """The installed package of every step (`pkg` or `pkg:graph`), checked against the pipeline's specifiers."""
    deps = pkg.manifest.project.dependencies
    out = {}
    for step in pkg.manifest.project.pipeline.steps:
        name = step_package(step)
        installed = env.get(name)
        if not deps[name].contains(installed.version, prereleases=True):
            raise PipelineError(f"{pkg.name} needs {name}{deps[name]}, but {name} {installed.version} is installed",
                                hint=f"run 'nnpm install {pkg.name}' to resolve its steps again")
        if verify:
            installed.verify()
        out[step] = installed
    return out


def step_signature(pkg: "InstalledPackage", env: "Environment", graph: str | None = None,
                   step: str | None = None) -> Signature:
    """The signature of a package's installed variant (of one graph); for a nested pipeline, its wiring's."""
    if pkg.manifest.project.models:
        return graph_signature(pkg.manifest, graph, step or pkg.name, pkg.variant)
    steps = installed_steps(pkg, env, verify=False)
    sigs = {s: step_signature(p, env, step_graph(s), s) for s, p in steps.items()}
    return signature(plan(pkg.manifest.project.pipeline, sigs), sigs)


def wiring_of(pkg: "InstalledPackage", env: "Environment") -> tuple[Wiring, dict[str, Signature]]:
    """The checked wiring of a pipeline and its steps' signatures."""
    steps = installed_steps(pkg, env, verify=False)
    sigs = {s: step_signature(p, env, step_graph(s), s) for s, p in steps.items()}
    return plan(pkg.manifest.project.pipeline, sigs), sigs
