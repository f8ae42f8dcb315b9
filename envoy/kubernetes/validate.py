#!/usr/bin/env python3
"""Offline validation of the Kubernetes manifests (no API server needed).

Renders each kustomization with `kubectl kustomize` (or reads YAML/JSON files as they are)
and checks every object:

- core kinds with kubernetes-validate (PyPI), strict: unknown fields are errors;
- WasmPlugin and EnvoyExtensionPolicy against the upstream CRD schemas in crds/, converted
  from OpenAPI v3 to strict JSON Schema (nullable -> null type, int-or-string -> anyOf,
  additionalProperties: false wherever the schema lists properties and does not preserve
  unknown fields, apiVersion/kind pinned, metadata.name required);
- any other kind is an error (kubernetes-validate alone would only warn).

Not checked (JSON Schema cannot): the CRDs' CEL rules (x-kubernetes-validations), list-map
key uniqueness, defaulting, and anything only a running cluster knows.

    validate.py                      every overlay, and the base with each component
    validate.py PATH...              these kustomization directories or manifest files
    validate.py --dump-json PATH     print the rendered objects of PATH as a JSON list

Exit status: 0 when every object is valid, 1 when one is not, 2 for a usage or render error.
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile

import jsonschema
import kubernetes_validate
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
CRD_DIR = os.path.join(HERE, "crds")
# The Kubernetes version the manifests target: image volumes (the plain-Envoy overlay's
# filter) are in the API from 1.33.
KUBERNETES_VERSION = "1.33"


class RenderError(Exception):
    pass


def kubectl():
    return os.environ.get("KUBECTL", "kubectl")


def render(path):
    """The objects of a kustomization directory (rendered) or of a manifest file (YAML
    documents, or JSON: one list of objects)."""
    if os.path.isdir(path):
        result = subprocess.run(
            [kubectl(), "kustomize", path], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RenderError(f"kubectl kustomize {path}: {result.stderr.strip()}")
        text = result.stdout
    else:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    try:
        docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        raise RenderError(f"{path}: not YAML: {error}") from error
    # A document that is a list holds objects (what --dump-json prints).
    return [obj for doc in docs for obj in (doc if isinstance(doc, list) else [doc])]


def default_targets():
    """(label, path) of every overlay, and of the base with each component."""
    overlays = os.path.join(HERE, "overlays")
    targets = [
        (f"overlays/{name}", os.path.join(overlays, name))
        for name in sorted(os.listdir(overlays))
        if os.path.isfile(os.path.join(overlays, name, "kustomization.yaml"))
    ]
    components = os.path.join(HERE, "components")
    for name in sorted(os.listdir(components)):
        if os.path.isfile(os.path.join(components, name, "kustomization.yaml")):
            targets.append((f"base+components/{name}", ("component", name)))
    return targets


def render_base_with(component):
    """The base with one component (kustomize renders a component only inside a kustomization)."""
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "kustomization.yaml"), "w", encoding="utf-8") as file:
            yaml.safe_dump(
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    # kustomize takes only relative paths.
                    "resources": [os.path.relpath(os.path.join(HERE, "base"), tmp)],
                    "components": [
                        os.path.relpath(os.path.join(HERE, "components", component), tmp)
                    ],
                },
                file,
            )
        return render(tmp)


# ---- CRD schemas --------------------------------------------------------------------------


def strict_schema(node):
    """OpenAPI v3 (structural CRD schema) -> strict JSON Schema, recursively."""
    if isinstance(node, list):
        return [strict_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict_schema(value) for key, value in node.items()}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        out.pop("type", None)
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_validators():
    """{(apiVersion, kind): Draft7Validator} for every served version of every CRD in crds/."""
    validators = {}
    for name in sorted(os.listdir(CRD_DIR)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(CRD_DIR, name), encoding="utf-8") as file:
            docs = [doc for doc in yaml.safe_load_all(file) if doc]
        for crd in docs:
            if crd.get("kind") != "CustomResourceDefinition":
                continue
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if not version.get("served", True):
                    continue
                api_version = f"{group}/{version['name']}"
                schema = strict_schema(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                properties = schema.setdefault("properties", {})
                properties["apiVersion"] = {"type": "string", "enum": [api_version]}
                properties["kind"] = {"type": "string", "enum": [kind]}
                # ObjectMeta is the API server's, not the CRD's: name required, rest free.
                properties["metadata"] = {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string", "minLength": 1}},
                }
                schema["required"] = sorted(
                    set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"}
                )
                validators[(api_version, kind)] = jsonschema.Draft7Validator(schema)
    return validators


# ---- checking -----------------------------------------------------------------------------


def error_path(error):
    return ".".join(str(part) for part in error.absolute_path) or "(top)"


def check(obj, crds):
    """Problems of one object (empty when valid) and the validator that judged it."""
    if not isinstance(obj, dict):
        return [f"not a mapping: {obj!r:.80}"], "none"
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return ["no apiVersion/kind"], "none"
    validator = crds.get((api_version, kind))
    if validator is not None:
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
        return [f"{error_path(e)}: {e.message}" for e in errors], "crd-schema"
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"unknown kind {kind} ({api_version}): no schema to check it against"], "none"
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(part) for part in error.path) or "(top)"
        return [f"{path}: {error.message}"], "kubernetes-validate"
    return [], "kubernetes-validate"


def describe(obj):
    if not isinstance(obj, dict):
        return "?"
    name = (obj.get("metadata") or {}).get("name", "?")
    namespace = (obj.get("metadata") or {}).get("namespace")
    where = f"{namespace}/{name}" if namespace else name
    return f"{obj.get('apiVersion', '?')} {obj.get('kind', '?')} {where}"


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", help="kustomization directories or manifest files")
    parser.add_argument("--dump-json", action="store_true", help="print the rendered objects")
    args = parser.parse_args(argv)

    if args.dump_json:
        if len(args.paths) != 1:
            parser.error("--dump-json takes exactly one path")
        try:
            json.dump(render(args.paths[0]), sys.stdout)
        except RenderError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0

    targets = [(path, path) for path in args.paths] or default_targets()
    crds = crd_validators()
    failed = 0
    checked = 0
    for label, path in targets:
        try:
            objects = render_base_with(path[1]) if isinstance(path, tuple) else render(path)
        except RenderError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        if not objects:
            print(f"FAIL {label}: no objects")
            failed += 1
            continue
        for obj in objects:
            checked += 1
            problems, judge = check(obj, crds)
            if problems:
                failed += 1
                print(f"FAIL {label}: {describe(obj)} [{judge}]")
                for problem in problems:
                    print(f"     {problem}")
            else:
                print(f"ok   {label}: {describe(obj)} [{judge}]")
    print(f"{checked} objects checked, {failed} invalid (Kubernetes {KUBERNETES_VERSION})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
