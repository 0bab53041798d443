"""nnpm.toml: one bad field at a time, each error naming the file, the key and what is allowed;
and what is accepted (the documented examples, SPDX licenses), normalised the same from TOML or a dict.
"""

from __future__ import annotations

import json
import tomllib

import pytest
from formatkit import DESIGN_EXAMPLE, MODEL, PIPELINE_EXAMPLE, PKG, load_toml, pkg, toml_error
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from nnpm.errors import ManifestError
from nnpm.format.project import (
    ModelSection,
    OutputInfo,
    PipelineSection,
    load_project,
    project_from_dict,
    project_to_dict,
)

BAD_TOML = [
    # (id, toml, key, fragment of what is allowed)
    ("name-invalid-chars", pkg(name='"bad name!"') + MODEL, "package.name", "letters, digits"),
    ("name-slash", pkg(name='"a/b"') + MODEL, "package.name", "letters, digits"),
    ("name-leading-dash", pkg(name='"-demo"') + MODEL, "package.name", "starting and ending with a letter"),
    ("name-trailing-dot", pkg(name='"demo."') + MODEL, "package.name", "starting and ending with a letter"),
    ("name-empty", pkg(name='""') + MODEL, "package.name", "letters, digits"),
    ("name-non-ascii", pkg(name='"dëmo"') + MODEL, "package.name", "letters, digits"),
    ("name-integer", pkg(name="5") + MODEL, "package.name", "must be a string"),
    ("name-list", pkg(name='["demo"]') + MODEL, "package.name", "must be a string"),
    ("name-missing", pkg(name=None) + MODEL, "package.name", "is required"),
    ("version-invalid", pkg(version='"1.0.0-beta.x!"') + MODEL, "package.version", "PEP 440"),
    ("version-semver-build", pkg(version='"1.0.0+build..1"') + MODEL, "package.version", "PEP 440"),
    ("version-words", pkg(version='"latest"') + MODEL, "package.version", "PEP 440"),
    ("version-integer", pkg(version="1") + MODEL, "package.version", "must be a string"),
    ("version-float", pkg(version="1.0") + MODEL, "package.version", "must be a string"),
    ("version-missing", pkg(version=None) + MODEL, "package.version", "is required"),
    ("description-integer", pkg(description="1") + MODEL, "package.description", "must be a string"),
    ("description-too-long", pkg(description='"' + "x" * 10_001 + '"') + MODEL, "package.description",
     "10000"),
    ("license-list", pkg(license='["MIT"]') + MODEL, "package.license", "must be a string"),
    ("license-format", pkg(license='"MIT; rm -rf /"') + MODEL, "package.license", "SPDX"),
    ("license-empty", pkg(license='""') + MODEL, "package.license", "SPDX"),
    ("readme-integer", pkg(readme="3") + MODEL, "package.readme", "must be a string"),
    ("readme-escapes", pkg(readme='"../README.md"') + MODEL, "package.readme", "inside the package"),
    ("tags-string", pkg(tags='"vision"') + MODEL, "package.tags", "list of up to 100 non-empty strings"),
    ("tags-integers", pkg(tags="[1, 2]") + MODEL, "package.tags", "list of up to 100 non-empty strings"),
    ("tags-empty-string", pkg(tags='[""]') + MODEL, "package.tags", "non-empty strings"),
    ("tags-too-many", pkg(tags="[" + ", ".join(f'"t{i}"' for i in range(101)) + "]") + MODEL,
     "package.tags", "up to 100"),
    ("authors-string", pkg(authors='"me"') + MODEL, "package.authors", "list of up to 100 non-empty strings"),
    ("homepage-integer", pkg(homepage="1") + MODEL, "package.homepage", "must be a string"),
    ("repository-table", pkg(repository="{url = 'x'}") + MODEL, "package.repository", "must be a string"),
    ("package-unknown-key", pkg(summary='"x"') + MODEL, "package.summary", "allowed: authors, description"),
    ("package-not-a-table", 'package = "demo"\n' + MODEL, "package", "must be a table"),
    ("package-missing", MODEL, "package", "is required"),
    ("model-file-missing", PKG + "[model]\n", "model.file", "is required"),
    ("model-file-integer", PKG + "[model]\nfile = 1\n", "model.file", "must be a string"),
    ("model-file-not-onnx", PKG + '[model]\nfile = "model.pt"\n', "model.file", ".onnx"),
    ("model-file-parent", PKG + '[model]\nfile = "../model.onnx"\n', "model.file", "inside the package"),
    ("model-file-absolute", PKG + '[model]\nfile = "/tmp/model.onnx"\n', "model.file", "inside the package"),
    ("model-file-dotdot-inside", PKG + '[model]\nfile = "a/../../model.onnx"\n', "model.file",
     "inside the package"),
    ("model-file-backslash", PKG + '[model]\nfile = "sub\\\\model.onnx"\n', "model.file", "inside the package"),
    ("model-file-drive", PKG + '[model]\nfile = "C:/model.onnx"\n', "model.file", "inside the package"),
    ("model-not-a-table", 'model = "model.onnx"\n' + PKG, "model", "must be a table"),
    ("model-unknown-key", PKG + MODEL + 'format = "onnx"\n', "model.format", "allowed: file, outputs"),
    ("labels-escape", PKG + MODEL + '[model.outputs.y]\nlabels = "../labels.txt"\n', "model.outputs.y.labels",
     "inside the package"),
    ("labels-absolute", PKG + MODEL + '[model.outputs.y]\nlabels = "/etc/passwd"\n', "model.outputs.y.labels",
     "inside the package"),
    ("labels-integer", PKG + MODEL + "[model.outputs.y]\nlabels = 1\n", "model.outputs.y.labels",
     "must be a string"),
    ("outputs-unknown-key", PKG + MODEL + '[model.outputs.y]\ncolour = "red"\n', "model.outputs.y.colour",
     "allowed: labels"),
    ("dependency-invalid-name", PKG + MODEL + '[dependencies]\n"bad name!" = ">=1"\n',
     "dependencies.bad name!", "letters, digits"),
    ("dependency-invalid-specifier", PKG + MODEL + '[dependencies]\nfoo = "=>1"\n', "dependencies.foo",
     "PEP 440 specifiers"),
    ("dependency-version-not-specifier", PKG + MODEL + '[dependencies]\nfoo = "1.0"\n', "dependencies.foo",
     "PEP 440 specifiers"),
    ("dependency-specifier-integer", PKG + MODEL + "[dependencies]\nfoo = 1\n", "dependencies.foo",
     "must be a string"),
    ("dependency-duplicate-pep503", PKG + MODEL + '[dependencies]\n"Foo_Bar" = ">=1"\n"foo.bar" = ">=2"\n',
     "dependencies.foo.bar", "PEP 503"),
    ("dependency-self", PKG + MODEL + '[dependencies]\ndemo = ">=1"\n', "dependencies.demo", "itself"),
    ("dependency-self-other-spelling", PKG + MODEL + '[dependencies]\n"DEMO" = ">=1"\n', "dependencies.demo",
     "itself"),
    ("dependencies-not-a-table", 'dependencies = ["foo"]\n' + PKG + MODEL, "dependencies", "must be a table"),
    ("requires-unknown-key", PKG + MODEL + '[requires]\ntensorflow = ">=2"\n', "requires.tensorflow",
     "allowed: onnxruntime"),
    ("requires-bad-specifier", PKG + MODEL + '[requires]\nonnxruntime = "~=1"\n', "requires.onnxruntime",
     "PEP 440 specifiers"),
    ("pipeline-step-not-dependency", PKG + '[dependencies]\na = ">=1"\n[pipeline]\nsteps = ["a", "b"]\n',
     "pipeline.steps", "add it under [dependencies]"),
    ("pipeline-duplicate-step", PKG + '[dependencies]\na = ">=1"\n[pipeline]\nsteps = ["a", "A"]\n',
     "pipeline.steps", "twice"),
    ("pipeline-no-steps", PKG + '[dependencies]\na = ">=1"\n[pipeline]\nsteps = []\n', "pipeline.steps",
     "at least one step"),
    ("pipeline-steps-string", PKG + '[dependencies]\na = ">=1"\n[pipeline]\nsteps = "a"\n', "pipeline.steps",
     "list of up to 100 non-empty strings"),
    ("pipeline-bad-step-name", PKG + '[dependencies]\na = ">=1"\n[pipeline]\nsteps = ["a b"]\n',
     "pipeline.steps", "letters, digits"),
    ("pipeline-port-value", PKG + '[dependencies]\na = ">=1"\nb = ">=1"\n[pipeline]\nsteps = ["a", "b"]\n'
     '[pipeline.connect]\n"b.input" = "apixels"\n', "pipeline.connect.b.input", "'step.port'"),
    ("pipeline-port-key", PKG + '[dependencies]\na = ">=1"\nb = ">=1"\n[pipeline]\nsteps = ["a", "b"]\n'
     '[pipeline.connect]\n"binput" = "a.pixels"\n', "pipeline.connect.binput", "'step.port'"),
    ("pipeline-port-trailing-dot", PKG + '[dependencies]\na = ">=1"\n[pipeline]\nsteps = ["a"]\n'
     '[pipeline.outputs]\nlogits = "a."\n', "pipeline.outputs.logits", "'step.port'"),
    ("pipeline-port-integer", PKG + '[dependencies]\na = ">=1"\n[pipeline]\nsteps = ["a"]\n'
     '[pipeline.inputs]\nimage = 3\n', "pipeline.inputs.image", "'step.port'"),
    ("pipeline-unknown-key", PKG + '[dependencies]\na = ">=1"\n[pipeline]\nsteps = ["a"]\norder = "x"\n',
     "pipeline.order", "allowed: connect, inputs, outputs, steps"),
    ("include-parent", PKG + MODEL + '[files]\ninclude = ["../x"]\n', "files.include", "inside the package"),
    ("include-absolute", PKG + MODEL + '[files]\ninclude = ["/etc/passwd"]\n', "files.include",
     "inside the package"),
    ("include-dotdot-inside", PKG + MODEL + '[files]\ninclude = ["a/../../b"]\n', "files.include",
     "inside the package"),
    ("include-backslash", PKG + MODEL + '[files]\ninclude = ["..\\\\x"]\n', "files.include", "inside the package"),
    ("include-backslash-inside", PKG + MODEL + '[files]\ninclude = ["a\\\\b"]\n', "files.include",
     "inside the package"),
    ("include-dot", PKG + MODEL + '[files]\ninclude = ["./x"]\n', "files.include", "inside the package"),
    ("include-double-slash", PKG + MODEL + '[files]\ninclude = ["a//b"]\n', "files.include",
     "inside the package"),
    ("include-nul", PKG + MODEL + '[files]\ninclude = ["a\\u0000b"]\n', "files.include", "inside the package"),
    ("include-drive", PKG + MODEL + '[files]\ninclude = ["C:\\\\x"]\n', "files.include", "inside the package"),
    ("include-too-long", PKG + MODEL + '[files]\ninclude = ["' + "a" * 256 + '"]\n', "files.include",
     "inside the package"),
    ("include-string", PKG + MODEL + '[files]\ninclude = "labels.txt"\n', "files.include",
     "list of up to 100 non-empty strings"),
    ("files-unknown-key", PKG + MODEL + '[files]\nexclude = ["x"]\n', "files.exclude", "allowed: include"),
    ("top-level-unknown-key", PKG + MODEL + "[tool.black]\nline-length = 1\n", "tool",
     "allowed: dependencies, files, model, models, package, pipeline, requires, tests, variants"),
    ("both-model-and-pipeline", PKG + MODEL + '[dependencies]\na = ">=1"\n[pipeline]\nsteps = ["a"]\n', "model",
     "exactly one of [model] or [pipeline]"),
    ("neither-model-nor-pipeline", PKG, "model", "exactly one of [model] or [pipeline]"),
]


@pytest.mark.parametrize("text,key,allowed", [c[1:] for c in BAD_TOML], ids=[c[0] for c in BAD_TOML])
def test_bad_nnpm_toml_names_file_key_and_what_is_allowed(tmp_path, text, key, allowed):
    exc, path = toml_error(tmp_path, text)
    assert exc.file == path
    assert exc.key == key
    line = exc.one_line()
    assert line.startswith(f"{path}: {key}: ")
    assert allowed in line
    assert "\n" not in line


def test_name_too_long_is_rejected_and_names_the_key(tmp_path):
    exc, path = toml_error(tmp_path, pkg(name='"' + "a" * 101 + '"') + MODEL)
    assert (exc.file, exc.key) == (path, "package.name")


def test_name_of_exactly_100_characters_is_accepted(tmp_path):
    project, _ = load_toml(tmp_path, pkg(name='"' + "a" * 100 + '"') + MODEL)
    assert project.name == "a" * 100


def test_name_too_long_says_the_limit(tmp_path):
    exc, _ = toml_error(tmp_path, pkg(name='"' + "a" * 101 + '"') + MODEL)
    assert "100" in exc.one_line()


@pytest.mark.parametrize("text", [
    PKG + MODEL + "[files\n",
    PKG + 'name = "again"\n' + MODEL,
    '[package]\nname = "demo\nversion = "1"\n',
    PKG + MODEL + "x = \n",
], ids=["unclosed-table", "duplicate-key", "unclosed-string", "missing-value"])
def test_invalid_toml_names_the_file(tmp_path, text):
    exc, path = toml_error(tmp_path, text)
    assert exc.file == path
    assert "not valid TOML" in exc.one_line()
    assert "\n" not in exc.one_line()


def test_non_utf8_toml_is_a_manifest_error(tmp_path):
    exc, path = toml_error(tmp_path, PKG.encode() + b'description = "\xff\xfe"\n' + MODEL.encode())
    assert exc.file == path and "not valid TOML" in str(exc)


def test_missing_nnpm_toml_says_how_to_start(tmp_path):
    with pytest.raises(ManifestError, match="nnpm.toml") as info:
        load_project(tmp_path)
    assert "nnpm init" in info.value.one_line()


@pytest.mark.parametrize("text", [
    pkg(name='"demo\\n"') + MODEL,
    pkg(license='"MIT\\n"') + MODEL,
    PKG + MODEL + '[dependencies]\n"foo\\n" = ">=1"\n',
    PKG + '[dependencies]\na = ">=1"\n[pipeline]\nsteps = ["a"]\n[pipeline.outputs]\nlogits = "a.y\\n"\n',
], ids=["name", "license", "dependency-name", "port"])
def test_trailing_newline_is_rejected(tmp_path, text):
    toml_error(tmp_path, text)


# ---------------------------------------------------------------- nnpm.toml: what is accepted

def test_design_example_parses_and_normalises(tmp_path):
    project, _ = load_toml(tmp_path, DESIGN_EXAMPLE)
    assert project.name == "resnet-18"
    assert project.version == Version("1.0")
    assert project.license == "Apache-2.0"
    assert project.tags == ("vision", "image-classification")
    assert project.model == ModelSection("model.onnx", {"logits": OutputInfo("labels.txt")})
    assert project.dependencies == {"imagenet-preprocess": SpecifierSet(">=1.0,<2"), "other": SpecifierSet("")}
    assert project.requires == {"onnxruntime": SpecifierSet(">=1.17")}
    assert project.declared_files() == ["model.onnx", "README.md", "labels.txt", "assets/notes.txt"]


def test_pipeline_example_parses(tmp_path):
    project, _ = load_toml(tmp_path, PIPELINE_EXAMPLE)
    assert project.model is None
    assert project.pipeline == PipelineSection(
        steps=("imagenet-preprocess", "resnet18"), connect={"resnet18.input": "imagenet-preprocess.pixels"},
        outputs={"logits": "resnet18.logits"})
    assert project.declared_files() == []


def test_project_to_dict_reparses_to_the_same_project(tmp_path):
    for text in (DESIGN_EXAMPLE, PIPELINE_EXAMPLE):
        project, _ = load_toml(tmp_path, text)
        again = project_from_dict(project_to_dict(project))
        assert again == project
        assert project_to_dict(again) == project_to_dict(project)


@pytest.mark.parametrize("spdx", ["MIT", "Apache-2.0", "GPL-3.0-or-later", "MIT OR Apache-2.0",
                                  "(MIT AND BSD-3-Clause)", "LicenseRef-Proprietary", "GPL-2.0+"])
def test_spdx_expressions_are_accepted(tmp_path, spdx):
    project, _ = load_toml(tmp_path, pkg(license=json.dumps(spdx)) + MODEL)
    assert project.license == spdx



def test_toml_and_dict_paths_agree(tmp_path):
    project, path = load_toml(tmp_path, DESIGN_EXAMPLE)
    assert project_from_dict(tomllib.loads(DESIGN_EXAMPLE), file=str(path)) == project
