"""One exception tree for nnpm, client and server alike.

    NnpmError                         400  nnpm_error
    ├── ManifestError                 400  invalid_manifest       (fields: file, key)
    │   └── SpecError                 400  invalid_spec
    ├── ModelError                    422  invalid_model
    ├── PackageSafetyError            422  unsafe_package
    ├── PipelineError                 422  invalid_pipeline
    ├── IntegrityError                400  integrity_error
    │   ├── SignatureError            400  bad_signature          (fields: keyid)
    │   └── IndexTrustError           400  untrusted_index        (fields: role)
    ├── ConfigError                   400  config_error
    ├── ResolutionError                    resolution_impossible  (fields: causes)
    ├── InputError (ValueError)            invalid_input
    ├── NoLabelsError (KeyError)           no_labels
    ├── RequirementError                   unmet_requirement
    ├── NotInstalledError                  not_installed
    ├── EnvError                           environment_error
    └── RegistryError                 500  registry_error
        ├── NotFoundError             404  not_found
        ├── AuthError                      (either of the two below)
        │   ├── UnauthenticatedError  401  unauthorized
        │   └── ForbiddenError        403  forbidden
        ├── ConflictError             409  conflict
        ├── TooLargeError             413  too_large
        └── BusyError                 429  busy

Each class says when it is raised, its wire `code` and the HTTP `http_status` a server
answers with. An instance may carry its own `status` (a 422 ManifestError, a 503
RegistryError); on the client, `status` is the status of the answer the error came in.
The server sends `{"error": code, "detail": message, "hint": hint, "fields": {...}}`
(`to_wire`), and the client rebuilds the same class with the same message, hint and
fields (`from_wire`). The CLI turns any NnpmError into one line in one place.
"""

from __future__ import annotations

from typing import Any, ClassVar


class NnpmError(Exception):
    """Base of every error nnpm raises on purpose."""

    code: ClassVar[str] = "nnpm_error"
    http_status: ClassVar[int] = 400
    wire_fields: ClassVar[tuple[str, ...]] = ()   # attributes sent in the wire form's "fields"
    hint: str | None = None
    status: int | None = None

    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return self.message

    def one_line(self) -> str:
        """The message plus its hint, as the CLI prints it."""
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def response_status(self) -> int:
        """The HTTP status a server answers this error with."""
        return self.status or self.http_status

    def to_wire(self) -> dict[str, Any]:
        """The JSON body a server sends for this error."""
        return {"error": self.code, "detail": self.message, "hint": self.hint,
                "fields": {name: getattr(self, name, None) for name in self.wire_fields}}

    @classmethod
    def from_wire(cls, detail: str, *, hint: str | None, fields: dict[str, Any] | None,
                  status: int | None) -> "NnpmError":
        """The error a wire answer describes: the same message, hint and fields, without re-formatting."""
        err = cls.__new__(cls)
        NnpmError.__init__(err, detail, hint=hint, status=status)
        for name in cls.wire_fields:
            setattr(err, name, (fields or {}).get(name))
        return err


class ManifestError(NnpmError):
    """nnpm.toml or manifest.json is malformed: names the file, the key and what is allowed."""

    code = "invalid_manifest"
    wire_fields = ("file", "key")
    file: str | None = None
    key: str | None = None

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 hint: str | None = None, status: int | None = None) -> None:
        where = ": ".join(p for p in (file, key) if p)
        super().__init__(f"{where}: {message}" if where else message, hint=hint, status=status)
        self.file = file
        self.key = key


class SpecError(ManifestError):
    """A package spec (name, requirement, folder or archive path) is malformed or unsupported."""

    code = "invalid_spec"


class ModelError(NnpmError):
    """The ONNX file cannot be read, fails onnx.checker, or onnxruntime refuses it."""

    code = "invalid_model"
    http_status = 422


class PackageSafetyError(NnpmError):
    """A package breaks a safety rule: a path leaves the root, a link, a size cap, bad offsets."""

    code = "unsafe_package"
    http_status = 422


class PipelineError(NnpmError):
    """A pipeline's wiring does not fit its steps' signatures."""

    code = "invalid_pipeline"
    http_status = 422


class IntegrityError(NnpmError):
    """Bytes do not match their recorded size or sha256."""

    code = "integrity_error"


class SignatureError(IntegrityError):
    """A publisher signature that does not verify, names a key not registered for the package,
    or is missing where one is required (`--require-signatures`, a package with registered keys)."""

    code = "bad_signature"
    wire_fields = ("keyid",)
    keyid: str | None = None

    def __init__(self, message: str, *, keyid: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.keyid = keyid


class IndexTrustError(IntegrityError):
    """The registry's signed index (TUF metadata) was refused: tampered, rolled back, frozen
    (expired), or missing on a registry whose root this machine has pinned."""

    code = "untrusted_index"
    wire_fields = ("role",)
    role: str | None = None

    def __init__(self, message: str, *, role: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.role = role


class ConfigError(NnpmError):
    """Configuration (registry URL, token, NNPM_HOME, server options) is missing or malformed."""

    code = "config_error"


class ResolutionError(NnpmError):
    """No set of versions satisfies every requirement; `causes` holds the clashing requirements."""

    code = "resolution_impossible"
    wire_fields = ("causes",)

    def __init__(self, message: str, *, causes: list | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.causes = causes or []


class InputError(NnpmError, ValueError):
    """Model inputs do not match the signature: names the input, expected and given dtype/shape."""

    code = "invalid_input"


class NoLabelsError(NnpmError, KeyError):
    """A model output has no labels file declared (or the model has no such output)."""

    code = "no_labels"

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class RequirementError(NnpmError):
    """A package needs a runtime (onnxruntime, opset, provider) this machine does not have."""

    code = "unmet_requirement"


class NotInstalledError(NnpmError):
    """A package is not installed in the environment asked for."""

    code = "not_installed"


class EnvError(NnpmError):
    """An environment is missing, locked, or its state is damaged."""

    code = "environment_error"


class RegistryError(NnpmError):
    """The registry answered with an error or could not be reached (status None: never answered)."""

    code = "registry_error"
    http_status = 500


class NotFoundError(RegistryError):
    """The package, version, user or blob does not exist on the registry."""

    code = "not_found"
    http_status = 404


class AuthError(RegistryError):
    """The request is not allowed: one of the two classes below."""

    code = "unauthorized"
    http_status = 401


class UnauthenticatedError(AuthError):
    """No token, or a token the registry does not know (401)."""

    code = "unauthorized"
    http_status = 401


class ForbiddenError(AuthError):
    """A valid token whose user may not do this, e.g. change a package it does not own (403)."""

    code = "forbidden"
    http_status = 403


class ConflictError(RegistryError):
    """The version exists already with other content (409)."""

    code = "conflict"
    http_status = 409


class TooLargeError(RegistryError):
    """A body or blob exceeds the registry's size limit (413)."""

    code = "too_large"
    http_status = 413


class BusyError(RegistryError):
    """The registry is at capacity for this kind of request; try again after `retry_after` seconds (429)."""

    code = "busy"
    http_status = 429
    retry_after: float | None = None


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def error_for_code(code: str | None) -> type[NnpmError] | None:
    """The most specific error class a wire code stands for, or None when no class has it."""
    found = [cls for cls in _all_subclasses(NnpmError) if cls.code == code]
    if not found:
        return None
    # UnauthenticatedError shares AuthError's code: prefer the leaf.
    return next((c for c in found if not c.__subclasses__()), found[-1])


def all_error_classes() -> list[type[NnpmError]]:
    """NnpmError and every subclass, for completeness tests."""
    return [NnpmError, *_all_subclasses(NnpmError)]
