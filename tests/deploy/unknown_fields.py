"""Finds fields Kubernetes does not know in manifests (a typo such as
'readinesProbe' passes a JSON-schema validation that allows extra
properties, kubernetes-models' included, and the API server drops or, in
strict mode, refuses it). Walks each document against the Kubernetes
Python client's models (python3-kubernetes: every model's attribute_map and
openapi_types), so it knows the fields of that client's API version
(Debian 12: Kubernetes 1.22).

usage: /usr/bin/python3 unknown_fields.py FILE.yaml...
Prints one line per document; exits 1 if any has an unknown field.
"""
import re
import sys

import yaml
from kubernetes.client import models

# Free-form values: anything goes below them.
FREE = {"object", "str", "int", "bool", "float", "date", "datetime"}


def model_for(api_version, kind):
    group, _, version = api_version.rpartition("/")
    prefix = version.capitalize()
    if group:
        prefix = group.split(".")[0].capitalize() + prefix
    return getattr(models, prefix + kind, None) or getattr(models, version.capitalize() + kind, None)


def walk(value, type_name, path, errors):
    if value is None or type_name in FREE:
        return
    m = re.fullmatch(r"list\[(.+)\]", type_name)
    if m:
        if isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, m.group(1), "%s[%d]" % (path, i), errors)
        return
    m = re.fullmatch(r"dict\(str, (.+)\)", type_name)
    if m:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, m.group(1), "%s.%s" % (path, k), errors)
        return
    cls = getattr(models, type_name, None)
    if cls is None:
        errors.append("%s: no model %s in this client" % (path, type_name))
        return
    if not isinstance(value, dict):
        return  # wrong types are the schema validator's job
    by_json = {j: attr for attr, j in cls.attribute_map.items()}
    for key, v in value.items():
        attr = by_json.get(key)
        if attr is None:
            errors.append("%s.%s: no field '%s' in %s (fields: %s)"
                          % (path, key, key, type_name, ", ".join(sorted(by_json))))
            continue
        walk(v, cls.openapi_types[attr], "%s.%s" % (path, key), errors)


def main():
    failed = 0
    for path in sys.argv[1:]:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        for i, doc in enumerate(docs):
            where = "%s#%d %s/%s" % (path, i, doc.get("kind"), (doc.get("metadata") or {}).get("name"))
            cls = model_for(doc.get("apiVersion", ""), doc.get("kind", ""))
            if cls is None:
                print("UNKNOWN: %s: no model for %s %s" % (where, doc.get("apiVersion"), doc.get("kind")),
                      file=sys.stderr)
                failed += 1
                continue
            errors = []
            walk(doc, cls.__name__, doc.get("kind", "?"), errors)
            if errors:
                failed += 1
                for e in errors:
                    print("UNKNOWN FIELD: %s: %s" % (where, e), file=sys.stderr)
            else:
                print("ok: %s: every field known" % where)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
