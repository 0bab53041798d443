"""One exception tree for nnpm; the CLI turns any NnpmError into one line and an exit code.

The server sends `{"error": <code>, "detail": ...}` where code is the class's `code`;
the client maps it back to the same class with `error_for_code`.
"""

from __future__ import annotations


class NnpmError(Exception):
    """Base of every error nnpm raises on purpose."""

    code = "nnpm_error"
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        return self.message

    def one_line(self) -> str:
        """The message plus its hint, as the CLI prints it."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ManifestError(NnpmError):
    """nnpm.toml or manifest.json is malformed: names the file, the key and what is allowed."""

    code = "invalid_manifest"

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 hint: str | None = None) -> None:
        where = ": ".join(p for p in (file, key) if p)
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.file = file
        self.key = key


class ModelError(NnpmError):
    """The ONNX file cannot be read or fails onnx.checker."""

    code = "invalid_model"


class PackageSafetyError(NnpmError):
    """A package breaks a safety rule: a path leaves the root, a link, a size cap, bad offsets."""

    code = "unsafe_package"


class PipelineError(NnpmError):
    """A pipeline's wiring does not fit its steps' signatures."""

    code = "invalid_pipeline"


class ResolutionError(NnpmError):
    """No set of versions satisfies every requirement; `causes` holds the clashing requirements."""

    code = "resolution_impossible"

    def __init__(self, message: str, *, causes: list | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.causes = causes or []


class IntegrityError(NnpmError):
    """Bytes do not match their recorded size or sha256."""

    code = "integrity_error"


class InputError(NnpmError, ValueError):
    """Model inputs do not match the signature: names the input, expected and given dtype/shape."""

    code = "invalid_input"


class NoLabelsError(NnpmError, KeyError):
    """A model output has no labels file declared (or the model has no such output)."""

    code = "no_labels"


class RequirementError(NnpmError):
    """A package needs a runtime (onnxruntime, opset) this machine does not have."""

    code = "unmet_requirement"


class NotInstalledError(NnpmError):
    """A package is not installed in the environment asked for."""

    code = "not_installed"


class EnvError(NnpmError):
    """An environment is missing, locked, or its state is damaged."""

    code = "environment_error"


class ConfigError(NnpmError):
    """Configuration (registry URL, token, NNPM_HOME) is missing or malformed."""

    code = "config_error"


class RegistryError(NnpmError):
    """The registry answered with an error or could not be reached."""

    code = "registry_error"
    status: int | None = None

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class NotFoundError(RegistryError):
    """The package, version or blob does not exist on the registry."""

    code = "not_found"


class AuthError(RegistryError):
    """No token (401) or a token without rights to this package (403)."""

    code = "unauthorized"


class ConflictError(RegistryError):
    """The version exists already with other content (409)."""

    code = "conflict"


class TooLargeError(RegistryError):
    """A body or blob exceeds the registry's size limit (413)."""

    code = "too_large"


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def error_for_code(code: str) -> type[NnpmError]:
    """The error class a server error code stands for (RegistryError when unknown)."""
    for cls in _all_subclasses(NnpmError):
        if cls.code == code:
            return cls
    return RegistryError
