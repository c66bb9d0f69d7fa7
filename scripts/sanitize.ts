#!/usr/bin/env bun
/**
 * `bun run sanitize`: scripts/sanitize_cases.ts under compute-sanitizer's memcheck, racecheck,
 * synccheck and initcheck, one summary line per tool. Needs a GPU and compute-sanitizer (part of
 * the CUDA toolkit) on the PATH. First-use tuning is off here: it would only add timing launches.
 */
import { join, resolve } from "node:path";
import { EXIT, parseFlags, UsageError } from "../cli/usage.ts";

const HELP = `Usage: bun run sanitize

Runs scripts/sanitize_cases.ts (writes on both paths, checked byte for byte) under each of
compute-sanitizer's memcheck, racecheck, synccheck and initcheck, one summary line per tool.
Needs a GPU and compute-sanitizer (part of the CUDA toolkit) on the PATH.

Exit status: ${EXIT.ok} clean; ${EXIT.failed} not clean, a wrong byte, or compute-sanitizer is missing; ${EXIT.usage} bad flags.
`;

let help: boolean | undefined;
try {
  help = parseFlags(process.argv.slice(2), { help: { type: "boolean", short: "h" } }).help;
} catch (error) {
  if (!(error instanceof UsageError)) throw error;
  console.error(`sanitize: ${error.message}; see --help.`);
  process.exit(EXIT.usage);
}
if (help === true) {
  process.stdout.write(HELP);
  process.exit(EXIT.ok);
}

const root = resolve(import.meta.dir, "..");
const tools = ["memcheck", "racecheck", "synccheck", "initcheck"];
const which = Bun.spawnSync(["sh", "-c", "command -v compute-sanitizer"]);
if (which.exitCode !== 0) {
  console.error("sanitize: compute-sanitizer is not on the PATH (it ships with the CUDA toolkit).");
  process.exit(1);
}
let clean = true;
for (const tool of tools) {
  const t0 = performance.now();
  const run = Bun.spawnSync(
    ["compute-sanitizer", "--tool", tool, "--print-limit", "20", process.execPath, join(root, "scripts", "sanitize_cases.ts")],
    { env: { ...process.env, MLA_KV_AUTOTUNE: "0", MLA_KV_QUIET: "1" }, stdout: "pipe", stderr: "pipe" },
  );
  const text = run.stdout.toString() + run.stderr.toString();
  // racecheck reports hazards in its own summary line; the other tools in ERROR SUMMARY.
  const summary = /ERROR SUMMARY: (\d+) error/.exec(text) ?? /RACECHECK SUMMARY: \d+ hazards? displayed \((\d+) error/.exec(text);
  const cases = /sanitize-cases: (.*)/.exec(text)?.[1] ?? "the cases did not finish";
  const errors = summary ? Number(summary[1]) : NaN;
  const ok = run.exitCode === 0 && errors === 0 && cases.includes("every byte right");
  clean &&= ok;
  console.log(`sanitize: ${tool.padEnd(9)} ${Number.isNaN(errors) ? "no summary" : `${errors} errors`}; ${cases} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  if (!ok) console.log(text.split("\n").filter((l) => l.includes("=========")).slice(0, 30).join("\n"));
}
console.log(`sanitize: ${clean ? "clean" : "NOT clean"}`);
process.exit(clean ? 0 : 1);
