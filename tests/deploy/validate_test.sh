#!/usr/bin/env bash
# ctest deploy.manifests: every document of deploy/k8s/*.yaml validates
# against the Kubernetes schemas (kubernetes-models, via
# validate_manifests.mjs) and has no field Kubernetes does not know
# (unknown_fields.py, python3-kubernetes: the schemas allow extra fields),
# and each manifest under broken/ is refused, so the checks are seen to fail. Needs node and the npm packages that
# scripts/deps.sh installs into /opt/datafeed-k8s-validate (nothing is
# downloaded here). Also checks deploy/probe.py's syntax.
# usage: validate_test.sh REPO_ROOT [MODULES_DIR]
set -euo pipefail
root="$1"
modules="${2:-/opt/datafeed-k8s-validate/node_modules}"
here="$root/tests/deploy"
command -v node >/dev/null || { echo "FAIL: node is not installed (scripts/deps.sh installs nodejs)"; exit 1; }
[[ -d "$modules/kubernetes-models" && -d "$modules/js-yaml" ]] || {
  echo "FAIL: $modules lacks kubernetes-models or js-yaml; run scripts/deps.sh"
  exit 1
}
shopt -s nullglob
manifests=("$root"/deploy/k8s/*.yaml)
((${#manifests[@]} > 0)) || { echo "FAIL: no manifests in $root/deploy/k8s"; exit 1; }
# validate FILE...: the schemas, then unknown fields.
validate() {
  node "$here/validate_manifests.mjs" "$modules" "$@" && /usr/bin/python3 "$here/unknown_fields.py" "$@"
}
validate "${manifests[@]}"
# Every document must have been checked: count them.
docs="$(grep -c '^kind:' "${manifests[@]}" | awk -F: '{s += $NF} END {print s}')"
checked="$(node "$here/validate_manifests.mjs" "$modules" "${manifests[@]}" | grep -c '^ok: ')"
[[ "$docs" == "$checked" ]] || { echo "FAIL: $docs documents, $checked validated"; exit 1; }
echo "ok: $checked documents in ${#manifests[@]} manifests validate"
for bad in "$here"/broken/*.yaml; do
  if out="$(validate "$bad" 2>&1)"; then
    echo "FAIL: $bad validated, but it is broken:"
    echo "$out"
    exit 1
  fi
  echo "ok: refused $(basename "$bad"): $(echo "$out" | grep -E 'INVALID|UNKNOWN' | head -1 | cut -c1-200)"
done
/usr/bin/python3 -m py_compile "$root/deploy/probe.py"
echo "ok: deploy/probe.py compiles"
