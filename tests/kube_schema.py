"""Validating Kubernetes manifests offline: built-in kinds against Kubernetes' OpenAPI schema
(kubernetes-validate, pinned), the TrainJob against Kubeflow Trainer's CRD (vendored in
tests/fixtures/kubernetes, see SOURCES.toml there).

Both strict, the way `kubectl apply` (strict field validation, the default since 1.27)
treats a manifest: an unknown field is an error, not silently dropped. For the CRD that
means `additionalProperties: false` on every object schema that lists its properties and
does not keep unknown fields (x-kubernetes-preserve-unknown-fields), as the API server's
pruning would. The CRD's CEL rules (x-kubernetes-validations) that can be checked without
an API server are checked too: those on metadata.name; the others compare with the old
object (immutability) or concern fields torchrig does not write.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

FIXTURES = Path(__file__).parent / "fixtures" / "kubernetes"
SOURCES = tomllib.loads((FIXTURES / "SOURCES.toml").read_text())
KUBERNETES_VERSIONS: list[str] = SOURCES["kubernetes-openapi"]["kubernetes_versions"]
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class Invalid(Exception):
    pass


@functools.cache
def trainjob_crd() -> dict[str, Any]:
    entry = SOURCES["trainjob-crd"]
    raw = (FIXTURES / entry["file"]).read_bytes()
    if hashlib.sha256(raw).hexdigest() != entry["sha256"]:
        raise AssertionError(f"{entry['file']} differs from the sha256 in SOURCES.toml")
    (crd,) = [d for d in yaml.safe_load_all(raw) if d]
    return crd


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def _trainjob_validator() -> tuple[jsonschema.protocols.Validator, str, list[dict[str, str]]]:
    crd = trainjob_crd()
    (served,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    schema = _strict(copy.deepcopy(served["schema"]["openAPIV3Schema"]))
    api_version = f"{crd['spec']['group']}/{served['name']}"
    rules = schema.get("x-kubernetes-validations", [])
    return jsonschema.Draft202012Validator(schema), api_version, rules


def _metadata_rules(doc: dict[str, Any], rules: list[dict[str, str]]) -> None:
    """The CRD's top-level CEL rules on metadata.name, as Python: `matches('RE')` and
    `size(...) <= N`. A rule of another form fails loudly, so a newer CRD is looked at."""
    name = doc["metadata"]["name"]
    for rule in rules:
        text = rule["rule"]
        if m := re.fullmatch(r"self\.metadata\.name\.matches\('(.+)'\)", text):
            ok = re.search(m.group(1), name) is not None
        elif m := re.fullmatch(r"size\(self\.metadata\.name\) <= (\d+)", text):
            ok = len(name) <= int(m.group(1))
        else:
            raise AssertionError(f"a CEL rule this check does not know: {text}")
        if not ok:
            raise Invalid(f"TrainJob {name}: {rule.get('message', text)}")


def _object_meta(doc: dict[str, Any], version: str) -> None:
    """A custom resource's metadata is ObjectMeta, which the CRD leaves to the API server."""
    wrapper = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc["metadata"]}
    kubernetes_validate.validate(wrapper, version, strict=True)


def validate(doc: dict[str, Any], version: str) -> None:
    """Raise Invalid (with the path of the first problem) unless `doc` is valid."""
    name = doc.get("metadata", {}).get("name", "")
    if not DNS_1035.fullmatch(name) or len(name) > 63:
        raise Invalid(f"{doc.get('kind')} name {name!r} is not an RFC 1035 label")
    try:
        if doc.get("kind") == "TrainJob":
            validator, api_version, rules = _trainjob_validator()
            if doc.get("apiVersion") != api_version:
                raise Invalid(
                    f"TrainJob apiVersion {doc.get('apiVersion')}, the CRD serves {api_version}"
                )
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
            if errors:
                e = errors[0]
                raise Invalid(f"TrainJob at {'/'.join(map(str, e.absolute_path))}: {e.message}")
            _metadata_rules(doc, rules)
            _object_meta(doc, version)
        else:
            kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        raise Invalid(
            f"{doc.get('kind')} (Kubernetes {e.version}) at "
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        ) from None
    except kubernetes_validate.SchemaNotFoundError as e:
        raise Invalid(e.message) from None


def validate_text(text: str, version: str) -> list[dict[str, Any]]:
    """Parse a multi-document YAML file (with PyYAML, as kubectl's YAML reader would) and
    validate each document; return them."""
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    for doc in docs:
        validate(doc, version)
    return docs
