#!/usr/bin/env bun
/**
 * Checks that imports only point down the layers: cuda/ ← ffi/ ← src/ ← autotune/ ← mod.ts, cli/.
 * A module may import its own layer and the layers below it, never one above; bench/, scripts/,
 * examples/ and tests/ are users of the package and sit above every layer (they may import
 * anything, and nothing in a layer may import them). Type-only imports count: they tie a layer to
 * the one they name as much as any other.
 *
 *   bun scripts/check_layers.ts     lists the imports that point up, and exits 1 if there are any
 *
 * @module
 */

import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative, resolve } from "node:path";

/** The layers, lowest first. */
export const LAYERS = ["ffi", "src", "autotune", "top"] as const;
export type Layer = (typeof LAYERS)[number] | "users";

/** Folders whose modules are checked, and the root module. */
const CHECKED_DIRS = ["ffi", "src", "autotune", "cli"] as const;
const USERS = new Set(["bench", "scripts", "examples", "tests"]);

/** The layer of a path relative to the package root, or null for what is in none (package.json, say). */
export function layerOf(path: string): Layer | null {
  const p = path.split("\\").join("/");
  if (p === "mod.ts") return "top";
  const top = p.split("/")[0]!;
  if (top === "cli") return "top";
  if (top === "ffi" || top === "src" || top === "autotune") return top;
  return USERS.has(top) ? "users" : null;
}

const rank = (layer: Layer) => (layer === "users" ? LAYERS.length : LAYERS.indexOf(layer));

// The forms a module names another in: `from "x"` (imports, type imports, re-exports),
// `import "x"` (side effects), `import("x")` and `require("x")`. Read with patterns rather than a
// parser so that the check needs no dev dependency and runs wherever the package's tests do.
const SPECIFIER_PATTERNS = [
  /\bfrom\s*["']([^"']+)["']/g,
  /\bimport\s*["']([^"']+)["']/g,
  /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
  /\brequire\s*\(\s*["']([^"']+)["']\s*\)/g,
];

/** The source without its comments, so a commented-out import names nothing. */
function withoutComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`\\])\/\/.*$/gm, "$1");
}

/** The module specifiers a source imports: static, re-exports, side-effect, dynamic and require. */
export function importsOf(source: string): string[] {
  const code = withoutComments(source);
  const found: { at: number; specifier: string }[] = [];
  for (const pattern of SPECIFIER_PATTERNS) {
    for (const m of code.matchAll(pattern)) {
      // An import written inside a string literal ('import("x")' in a message) names nothing.
      if (/["'`]\s*$/.test(code.slice(0, m.index))) continue;
      found.push({ at: m.index!, specifier: m[1]! });
    }
  }
  return found.sort((a, z) => a.at - z.at).map((f) => f.specifier);
}

/** An import that points up a layer. */
export interface Violation {
  readonly file: string;
  readonly fileLayer: Layer;
  readonly imports: string;
  readonly importedLayer: Layer;
}

/**
 * The imports of `files` (paths relative to the package root, and their sources) that point to a
 * higher layer. Only relative specifiers name modules of the package; packages and built-ins
 * ("zod", "node:fs") belong to no layer.
 */
export function layerViolations(files: ReadonlyMap<string, string>): Violation[] {
  const out: Violation[] = [];
  for (const [file, source] of files) {
    const fileLayer = layerOf(file);
    if (fileLayer === null || fileLayer === "users") continue;
    for (const specifier of importsOf(source)) {
      if (!specifier.startsWith(".")) continue;
      const target = normalize(join(dirname(file), specifier)).split("\\").join("/");
      const importedLayer = layerOf(target);
      if (importedLayer !== null && rank(importedLayer) > rank(fileLayer)) out.push({ file, fileLayer, imports: target, importedLayer });
    }
  }
  return out;
}

/** Every TypeScript module of the layers under `root`, keyed by its path relative to `root`. */
export function layerSources(root: string): Map<string, string> {
  const files = new Map<string, string>([["mod.ts", readFileSync(join(root, "mod.ts"), "utf8")]]);
  for (const dir of CHECKED_DIRS) {
    for (const entry of readdirSync(join(root, dir), { recursive: true, withFileTypes: true })) {
      if (!entry.isFile() || !entry.name.endsWith(".ts")) continue;
      const path = join(entry.parentPath, entry.name);
      files.set(relative(root, path).split("\\").join("/"), readFileSync(path, "utf8"));
    }
  }
  return files;
}

/** One line a violation, naming both ends and their layers. */
export function describeViolation(v: Violation): string {
  return `${v.file} (${v.fileLayer}) imports ${v.imports} (${v.importedLayer})`;
}

if (import.meta.main) {
  const violations = layerViolations(layerSources(resolve(import.meta.dir, "..")));
  for (const v of violations) console.error(`check_layers: ${describeViolation(v)}`);
  if (violations.length > 0) process.exit(1);
  console.log("check_layers: every import points down the layers");
}
