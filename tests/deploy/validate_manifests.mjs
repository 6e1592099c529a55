// Validates Kubernetes manifests against the Kubernetes OpenAPI schemas,
// with the kubernetes-models npm package (its classes' validate(): JSON
// Schema, ajv). Every document of every file must name an apiVersion/kind
// that kubernetes-models knows and must validate; unknown fields are errors.
//
// usage: node validate_manifests.mjs MODULES_DIR FILE.yaml...
//   MODULES_DIR: a node_modules folder holding kubernetes-models and js-yaml
//   (scripts/deps.sh installs them into /opt/datafeed-k8s-validate).
// Prints one line per document; exits 1 if any failed.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import path from "node:path";

const [modulesDir, ...files] = process.argv.slice(2);
if (!modulesDir || files.length === 0) {
  console.error("usage: node validate_manifests.mjs MODULES_DIR FILE.yaml...");
  process.exit(2);
}
const require = createRequire(path.join(modulesDir, "noop.js"));
const yaml = require("js-yaml");

let failed = 0;
for (const file of files) {
  const docs = yaml.loadAll(readFileSync(file, "utf8")).filter((d) => d !== null && d !== undefined);
  if (docs.length === 0) {
    console.error(`${file}: no documents`);
    failed++;
  }
  for (const [i, doc] of docs.entries()) {
    const where = `${file}#${i} ${doc?.kind ?? "?"}/${doc?.metadata?.name ?? "?"}`;
    try {
      if (typeof doc !== "object" || typeof doc.apiVersion !== "string" || typeof doc.kind !== "string") {
        throw new Error("not a Kubernetes object (no apiVersion/kind)");
      }
      const modUrl = pathToFileURL(path.join(modulesDir, "kubernetes-models", doc.apiVersion, "index.js"));
      let mod;
      try {
        mod = await import(modUrl.href);
      } catch (e) {
        throw new Error(`apiVersion ${doc.apiVersion} is not one kubernetes-models knows`);
      }
      const Kind = mod[doc.kind];
      if (typeof Kind !== "function") throw new Error(`kind ${doc.kind} is not in ${doc.apiVersion}`);
      new Kind(doc).validate();
      console.log(`ok: ${where}`);
    } catch (e) {
      failed++;
      console.error(`INVALID: ${where}: ${e.message}`);
    }
  }
}
process.exit(failed > 0 ? 1 : 0);
