#!/usr/bin/env bun
/**
 * Checks that README.md's figures that come from the build still hold: the prebuilt library's
 * size and the tarball's (from `bun run pack`), and the CPU test counts CI prints. Sizes must be
 * right within the rounding the README writes them with (2.8 MB: 2.75 to 2.85 MB); counts exactly.
 * Fails with one line per figure that drifted, saying what to write instead. CI runs it after the
 * build, the pack and the tests:
 *
 *   bun scripts/check_readme.ts [--bun-pass N] [--ci-pass N]
 *
 * --bun-pass: the tests `bun test` passed; --ci-pass: the total CI prints (with the Deno suite and
 * the install check). Counts not given are not checked.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { PREBUILT_LIBRARY, tarballPath } from "./pack.ts";

/** What the build produced, as the README's figures measure it; absent: not checked. */
export interface BuildFacts {
  libraryBytes?: number;
  tarballBytes?: number;
  bunPass?: number;
  ciPass?: number;
}

/** One figure of the README: where it is (the regex's first group) and what it must equal. */
interface Figure {
  readonly what: string;
  readonly pattern: RegExp;
  readonly fact: keyof BuildFacts;
  readonly kind: "MB" | "count";
}

const FIGURES: readonly Figure[] = [
  { what: "the prebuilt library's size (Install)", pattern: /`prebuilt\/linux-x64\/libmla_kv\.so`, (\d+(?:\.\d+)?) MB/, fact: "libraryBytes", kind: "MB" },
  { what: "the fat library's size (The C ABI)", pattern: /size-compressed fatbinary\s+\((\d+(?:\.\d+)?) MB\)/, fact: "libraryBytes", kind: "MB" },
  { what: "the tarball's size (Install)", pattern: /One tarball \((\d+(?:\.\d+)?) MB packed\)/, fact: "tarballBytes", kind: "MB" },
  { what: "the Bun tests CI passes (Reliability)", pattern: /(\d+) Bun tests pass/, fact: "bunPass", kind: "count" },
  { what: "the total CI prints (Reliability)", pattern: /CI prints (\d+) passed/, fact: "ciPass", kind: "count" },
];

const lineOf = (text: string, index: number) => text.slice(0, index).split("\n").length;

/** Whether `stated` (as written, e.g. "2.8") covers `actual`, within half a unit of its last digit. */
export function withinRounding(stated: string, actual: number): boolean {
  const decimals = stated.includes(".") ? stated.length - stated.indexOf(".") - 1 : 0;
  const half = 0.5 * 10 ** -decimals;
  return Math.abs(actual - Number(stated)) <= half + 1e-9;
}

/** One line per figure of `readme` that does not match `facts` (empty: all hold). */
export function readmeDrift(readme: string, facts: BuildFacts): string[] {
  const problems: string[] = [];
  for (const figure of FIGURES) {
    const actual = facts[figure.fact];
    if (actual === undefined) continue;
    const match = figure.pattern.exec(readme);
    if (match === null) {
      problems.push(`README.md no longer states ${figure.what} in the form ${figure.pattern}; write it so, or change scripts/check_readme.ts`);
      continue;
    }
    const stated = match[1]!;
    const line = lineOf(readme, match.index);
    if (figure.kind === "MB") {
      const mb = actual / 1e6;
      if (!withinRounding(stated, mb)) {
        const decimals = stated.includes(".") ? stated.length - stated.indexOf(".") - 1 : 0;
        problems.push(`README.md:${line} says ${figure.what} is ${stated} MB, but it is ${mb.toFixed(3)} MB (${actual} bytes): write ${mb.toFixed(decimals)} MB`);
      }
    } else if (Number(stated) !== actual) {
      problems.push(`README.md:${line} says ${figure.what} is ${stated}, but it is ${actual}: write ${actual}`);
    }
  }
  return problems;
}

function main(): number {
  const { values } = parseArgs({ options: { "bun-pass": { type: "string" }, "ci-pass": { type: "string" } }, strict: true });
  const root = resolve(import.meta.dir, "..");
  const tarball = tarballPath();
  for (const file of [PREBUILT_LIBRARY, tarball]) {
    if (!existsSync(file)) {
      console.error(`check_readme: ${file} is missing; run \`bun run pack\` first`);
      return 1;
    }
  }
  const count = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const facts: BuildFacts = {
    libraryBytes: statSync(PREBUILT_LIBRARY).size,
    tarballBytes: statSync(tarball).size,
    bunPass: count(values["bun-pass"]),
    ciPass: count(values["ci-pass"]),
  };
  const problems = readmeDrift(readFileSync(join(root, "README.md"), "utf8"), facts);
  for (const p of problems) console.error(`check_readme: ${p}`);
  const checked = FIGURES.filter((f) => facts[f.fact] !== undefined).length;
  console.log(`check_readme: ${checked - problems.length} of ${checked} figures hold`);
  return problems.length === 0 ? 0 : 1;
}

if (import.meta.main) process.exit(main());
