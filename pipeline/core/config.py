"""Typed, validated view of ``params.yaml``.

Every knob lives in one nested YAML file (DVC tracks its keys per stage). We
validate the whole file before any work starts, so a typo in a section a stage
does not read still fails fast. pydantic does the type/range checking; this
module only turns its errors into one line per problem that names the key.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, Field, ValidationError, create_model, model_validator

from pipeline.core.errors import ConfigError
from pipeline.core.schema import Section
from pipeline.core.sections import (
    BaselinesConfig,
    ClaimsConfig,
    DataConfig,
    IntrospectiveAblationConfig,
    KDAblationConfig,
    RuntimeConfig,
    StudentConfig,
    SurfaceConfig,
    TeacherConfig,
    TuneConfig,
    unique,
)
from pipeline.methods import REGISTRY, Teacher


def _check_values(section: BaseModel, key: str, values: list[Any], where: str, method: str) -> None:
    """Each of ``values`` must be a valid value of ``<method>.<key>`` (the section's own
    validators judge it, with its other keys as they are); else name ``where``."""
    model = type(section)
    if key not in model.model_fields:
        raise ValueError(f"{where}: {method} has no key '{key}' "
                         f"(its keys: {', '.join(model.model_fields)})")
    for value in values:
        try:
            model.model_validate({**section.model_dump(), key: value})
        except ValidationError as exc:
            raise ValueError(f"{where}: {value!r} is not a value of {method}.{key} "
                             f"({exc.errors()[0]['msg']})") from None


class SharedParams(Section):
    """The sections every method shares; :data:`Params` adds one section per method,
    each declared by its registry entry (``pipeline/methods/registry/<name>.py``)."""

    profile: str = "quick"
    seeds: Annotated[list[int], Field(min_length=1), AfterValidator(unique("seeds"))]
    data: DataConfig = DataConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    teacher: TeacherConfig
    student: StudentConfig
    kd_ablation: KDAblationConfig = KDAblationConfig()
    baselines: BaselinesConfig
    introspective_ablation: IntrospectiveAblationConfig = IntrospectiveAblationConfig()
    tune: TuneConfig
    surface: SurfaceConfig = SurfaceConfig()
    claims: ClaimsConfig = ClaimsConfig()

    @model_validator(mode="after")
    def _tunable_keys_exist(self) -> SharedParams:
        for method, knobs in self.tune.own.items():
            if method not in REGISTRY:
                raise ValueError(f"tune.own.{method}: unknown method "
                                 f"(known: {', '.join(REGISTRY)})")
            for key, values in knobs.items():
                _check_values(getattr(self, method), key, values, f"tune.own.{method}.{key}",
                              method)
        if self.tune.enabled:
            for method in self.tune.all_methods:
                if method not in self.tune.own:
                    raise ValueError(f"tune.own.{method}: missing; every tuned method needs an "
                                     "entry (use {} for the shared knobs only)")
        if self.tune.enabled and self.data.val_per_class == 0:
            raise ValueError("tune.enabled needs a validation split: set data.val_per_class > 0 "
                             "(or tune.enabled: false)")
        return self

    @model_validator(mode="after")
    def _surface_fits_its_methods(self) -> SharedParams:
        """The surface's instances depend on no teacher, and every key it sets is a valid
        value of the method's section."""
        s = self.surface
        for role, method in (("method", s.method), ("reference", s.reference)):
            if method not in REGISTRY:
                raise ValueError(f"surface.{role}: unknown method '{method}' "
                                 f"(known: {', '.join(REGISTRY)})")
            if REGISTRY[method].teacher is not Teacher.NONE:
                raise ValueError(f"surface.{role}: '{method}' distils the teacher; the surface "
                                 "trains teacher-free methods only")
        settings = [(f"surface.{axis}", key, values)
                    for axis, key, values in (("x", s.knobs[0], s.x), ("y", s.knobs[1], s.y))]
        settings += [(f"surface.fixed.{k}", k, [v]) for k, v in s.fixed.items()]
        for where, key, values in settings:
            if key in s.fixed and where != f"surface.fixed.{key}":
                raise ValueError(f"surface.fixed.{key}: '{key}' is a knob of the grid")
            _check_values(getattr(self, s.method), key, values, where, s.method)
        return self

    @model_validator(mode="after")
    def _fast_path_fits_the_explainer(self) -> SharedParams:
        """Input-space explainers backpropagate to the image once per class: through an
        inductor-compiled trunk that batched backward is a known failure on CUDA, and in
        fp16 without loss scaling the input gradients underflow."""
        explainer = self.introspective.explainer
        if explainer == "gradcam":
            return self
        if self.runtime.compile:
            raise ValueError(f"runtime.compile: true does not combine with introspective."
                             f"explainer: {explainer} (batched input gradients through a "
                             "compiled trunk); use explainer: gradcam or compile: false")
        if self.runtime.amp == "fp16":
            raise ValueError(f"runtime.amp: fp16 underflows introspective.explainer: {explainer}'s "
                             "input gradients; use amp: bf16 (fp32's range) or off")
        return self


def _assemble() -> type[SharedParams]:
    """The whole ``params.yaml``: the shared sections and, for every registered method, its
    own section (its registry entry's ``Section``) under its name."""
    sections: dict[str, Any] = {name: (info.config, info.config())
                                for name, info in REGISTRY.items()}
    return create_model("Params", __base__=SharedParams, __module__=__name__, **sections)


if TYPE_CHECKING:
    Params = SharedParams  # type checkers see the shared sections; methods' are dynamic
else:
    Params = _assemble()


def _describe(error: dict[str, Any], model: type[BaseModel]) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = _section_at(model, error["loc"][:-1])
        hint = ""
        if parent is not None:
            close = difflib.get_close_matches(str(error["loc"][-1]), parent.model_fields, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{loc}: unknown key{hint}"
    if kind == "missing":
        return f"{loc}: required key is missing"
    message = error["msg"]
    message = message[0].lower() + message[1:]
    message = message.removeprefix("value error, ")
    if not loc:  # whole-file checks name their keys themselves
        return message
    return f"{loc}: {message}, got {error.get('input')!r}"


def _section_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type):
            return None
        if not issubclass(field.annotation, BaseModel):
            return None
        model = field.annotation
    return model


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a nested dict; raise :class:`ConfigError` with one line per problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(e, Params) for e in exc.errors()]
        raise ConfigError("\n".join(f"{source}: {line}" for line in lines)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    return parse_params(raw, str(path))


def fingerprint(*parts: Any) -> str:
    """Stable short hash of JSON-able config pieces (tags, checkpoint matching)."""
    blob = json.dumps(
        [p.model_dump(mode="json") if isinstance(p, BaseModel) else p for p in parts],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (MLflow params are flat)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
