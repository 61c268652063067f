#!/usr/bin/env python3
"""Regenerates crates/apiserver/openapi/definitions-v1.33.json.gz: the Kubernetes v1.33 API's
OpenAPI definitions (swagger 2.0 `definitions` shape, with the `x-kubernetes-*` extensions:
patch strategies and merge keys, list types and map keys, group-version-kinds).

Source: the `kubernetes-validate` wheel on PyPI (Apache-2.0), which ships upstream's
definitions converted to JSON Schema (`kubernetes-json-schema/v1.33.0-local/_definitions.json`,
generated from kubernetes/kubernetes `api/openapi-spec/swagger.json` at v1.33.0). This script
undoes that conversion: `"type": [T, "null"]` -> `T`, `#/$defs/` -> `#/definitions/`, the
`enum`s the converter added to apiVersion/kind, and IntOrString/Quantity back to upstream's
`string` (+ `format: int-or-string`).

Usage: scripts/gen-openapi.py [path/to/kubernetes_validate-*.whl]
(without an argument it runs `pip download --no-deps kubernetes-validate==1.37.0`).
"""
import gzip, io, json, os, subprocess, sys, tempfile, zipfile

WHEEL_VERSION = "1.37.0"
MEMBER = "kubernetes_validate/kubernetes-json-schema/v1.33.0-local/_definitions.json"
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "apiserver", "openapi",
                   "definitions-v1.33.json.gz")


def fix(node):
    """One schema node; `properties` maps names (which may be `type`, `enum`, …) to schemas."""
    if not isinstance(node, dict):
        return node
    one_of = node.get("oneOf")
    if isinstance(one_of, list):
        types = sorted(t["type"][0] if isinstance(t.get("type"), list) else t.get("type")
                       for t in one_of)
        out = {k: v for k, v in node.items() if k != "oneOf"}
        out["type"] = "string"
        if types == ["integer", "string"]:
            out["format"] = "int-or-string"
        return out
    out = {}
    for k, v in node.items():
        if k == "type" and isinstance(v, list):
            real = [t for t in v if t != "null"]
            out[k] = real[0] if len(real) == 1 else real
        elif k == "$ref" and isinstance(v, str):
            out[k] = v.replace("#/$defs/", "#/definitions/")
        elif k == "enum":
            continue  # added by the converter (apiVersion/kind); upstream v2 has none
        elif k == "properties" and isinstance(v, dict):
            out[k] = {name: fix(s) for name, s in v.items()}
        elif k in ("items", "additionalProperties") and isinstance(v, dict):
            out[k] = fix(v)
        else:
            out[k] = v
    return out


def main():
    if len(sys.argv) > 1:
        wheel = sys.argv[1]
    else:
        tmp = tempfile.mkdtemp()
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                               "-d", tmp, f"kubernetes-validate=={WHEEL_VERSION}"])
        wheel = os.path.join(tmp, os.listdir(tmp)[0])
    defs = json.loads(zipfile.ZipFile(wheel).read(MEMBER))["$defs"]
    doc = {"definitions": {name: fix(d) for name, d in sorted(defs.items())}}
    data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        f.write(data)
    with open(OUT, "wb") as f:
        f.write(buf.getvalue())
    print(f"{OUT}: {len(doc['definitions'])} definitions, {len(data)} bytes "
          f"({len(buf.getvalue())} gzipped)")


if __name__ == "__main__":
    main()
