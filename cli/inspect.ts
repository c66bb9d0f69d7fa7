#!/usr/bin/env bun
/**
 * `bun run inspect` (or `bunx mla-kv inspect`): what this machine offers mla-kv — the library file
 * in use and its build, each GPU with its properties and the paths it can run, and the profile
 * its writes will use (user file, bundled, or none yet). Useful on a machine with no GPU too.
 *
 *   bun run inspect [--json]
 */
import { MlaKvError } from "../ffi/errors.ts";
import { libraryInfo } from "../ffi/native.ts";
import { PACKAGE_VERSION } from "../ffi/package_root.ts";
import { deviceCount, deviceInfo, supportsPath } from "../src/device.ts";
import { cacheDir, cacheDirProblem, profilePath, type Env } from "../autotune/cache_dir.ts";
import { gpuIdentity } from "../autotune/identity.ts";
import { autotuneEnabled, BUNDLED_PROFILES_DIR } from "../autotune/lookup.ts";
import type { Profile } from "../autotune/profile.ts";
import { winnersLine } from "./autotune_report.ts";
import { readProfileFile } from "../autotune/store.ts";
import { EXIT, exitStatusHelp, firstLine, parseFlags, UsageError } from "./usage.ts";

interface ProfileReport {
  source: "user" | "bundled" | "none";
  path: string | null;
  createdAt?: string;
  layouts?: Record<string, { tunedAt: string; method: string; fastest: string }>;
  note?: string;
}

export interface InspectReport {
  packageVersion: string;
  library: { path: string; buildId: string; abiVersion: number } | { error: string };
  cacheDir: string;
  /** The GPUs, or why none can be used (`noGpu`: the library works, but finds no GPU). */
  gpus: Array<Record<string, unknown>> | { error: string; noGpu?: boolean };
}

function summarise(profile: Profile): Pick<ProfileReport, "createdAt" | "layouts"> {
  const layouts: ProfileReport["layouts"] = {};
  for (const [key, layout] of Object.entries(profile.layouts)) {
    layouts[key] = { tunedAt: layout.tunedAt, method: layout.method, fastest: winnersLine(layout) };
  }
  return { createdAt: profile.createdAt, layouts };
}

/** The profile a GPU's writes will read: the user file if valid, else a bundled one, else none. */
function profileFor(device: number, dir: string, env: Env): ProfileReport {
  const identity = gpuIdentity(device);
  const user = profilePath(dir, identity);
  const mine = readProfileFile(user, identity);
  if (mine.ok) return { source: "user", path: user, ...summarise(mine.profile) };
  const bundled = profilePath(BUNDLED_PROFILES_DIR, identity);
  const shipped = readProfileFile(bundled, identity);
  if (shipped.ok) return { source: "bundled", path: bundled, ...summarise(shipped.profile) };
  return { source: "none", path: null, note: whatFirstUseDoes(mine.ok || mine.reason === "missing" ? null : `${mine.reason}: ${mine.detail}`, dir, env) };
}

/** What the first write of a layout with no profile does here: tune and save, tune only, or neither. */
function whatFirstUseDoes(badUserFile: string | null, dir: string, env: Env): string {
  const bad = badUserFile === null ? "" : `the user file is ${badUserFile}; `;
  if (!autotuneEnabled(env)) return `none: ${bad}tuning on first use is off (MLA_KV_AUTOTUNE), so writes use the built-in rule`;
  const unsavable = cacheDirProblem(dir);
  if (unsavable !== null) {
    return `none, and none can be saved (${unsavable}): ${bad}every process tunes each layout again at its first write (about 0.2 s)`;
  }
  return badUserFile === null
    ? "none yet: the first write of each layout tunes it (about 0.2 s)"
    : `none: ${bad}the first write of each layout tunes it again and replaces the file`;
}

/** What this machine offers mla-kv; never throws. */
export function inspect(env: Env = process.env): InspectReport {
  const dir = cacheDir(env);
  let library: InspectReport["library"];
  try {
    library = libraryInfo();
  } catch (error) {
    return { packageVersion: PACKAGE_VERSION, library: { error: firstLine(error) }, cacheDir: dir, gpus: { error: "the library did not load" } };
  }
  let count: number;
  try {
    count = deviceCount();
  } catch (error) {
    const noGpu = error instanceof MlaKvError && error.code === "NO_DEVICE";
    return { packageVersion: PACKAGE_VERSION, library, cacheDir: dir, gpus: { error: firstLine(error), noGpu } };
  }
  const gpus = Array.from({ length: count }, (_, device) => {
    const info = deviceInfo(device);
    return {
      index: device,
      name: info.name,
      computeCapability: `${info.computeCapability[0]}.${info.computeCapability[1]}`,
      smCount: info.smCount,
      l2Bytes: info.l2Bytes,
      memoryBytes: info.totalMemory,
      driverVersion: info.driverVersion,
      runtimeVersion: info.runtimeVersion,
      paths: (["vector", "tma"] as const).filter((p) => supportsPath(device, p)),
      profile: profileFor(device, dir, env),
    };
  });
  return { packageVersion: PACKAGE_VERSION, library, cacheDir: dir, gpus };
}

const cudaVersion = (v: unknown) => `${Math.floor(Number(v) / 1000)}.${(Number(v) % 1000) / 10}`;

export function formatInspect(r: InspectReport): string {
  const lines = [`mla-kv ${r.packageVersion}`];
  lines.push("error" in r.library
    ? `library: not loaded (${r.library.error})`
    : `library: ${r.library.path}\n  build ${r.library.buildId}, ABI ${r.library.abiVersion}`);
  lines.push(`profiles: ${r.cacheDir}`);
  if ("error" in r.gpus) {
    lines.push(`GPUs: none usable (${r.gpus.error})`);
    return lines.join("\n");
  }
  lines.push(r.gpus.length === 0 ? "GPUs: none (the driver reports no GPU)" : `GPUs: ${r.gpus.length}`);
  for (const g of r.gpus) {
    const p = g.profile as ProfileReport;
    lines.push(`  ${g.index}  ${g.name}  sm_${String(g.computeCapability).replace(".", "")}  ${g.smCount} SMs  L2 ${(Number(g.l2Bytes) / 2 ** 20).toFixed(0)} MB  ` +
      `${(Number(g.memoryBytes) / 2 ** 30).toFixed(0)} GiB  driver CUDA ${cudaVersion(g.driverVersion)}  runtime ${cudaVersion(g.runtimeVersion)}`);
    lines.push(`     paths: ${(g.paths as string[]).join(", ")}`);
    if (p.source === "none") {
      lines.push(`     profile: ${p.note}`);
    } else {
      lines.push(`     profile (${p.source}): ${p.path}`);
      for (const [key, l] of Object.entries(p.layouts ?? {})) {
        lines.push(`       ${key.padEnd(36)} tuned ${l.tunedAt} (${l.method}); ${l.fastest}`);
      }
    }
  }
  return lines.join("\n");
}

/** The exit status a report means: the library did not load, there is no GPU here, or all is well. */
export function inspectStatus(r: InspectReport): number {
  if ("error" in r.library) return EXIT.failed;
  if (!Array.isArray(r.gpus)) return r.gpus.noGpu === true ? EXIT.noGpu : EXIT.failed;
  return r.gpus.length === 0 ? EXIT.noGpu : EXIT.ok;
}

/** The --help of the command, run as `program` (`bun run inspect`, `mla-kv inspect`). */
export function inspectHelp(program = "bun run inspect"): string {
  return `Usage: ${program} [--json]

Shows what this machine offers mla-kv: the library file in use and its build, each NVIDIA GPU
with its properties and the write paths it runs, and the profile its writes will use (the user
file, a bundled one, or none yet, and what the first write of a layout will then do).

Flags:
  --json       Print the report as JSON instead of text.
  -h, --help   Show this help.

Environment: MLA_KV_LIBRARY (which library), MLA_KV_CACHE_DIR (where profiles live),
MLA_KV_AUTOTUNE (whether first use tunes).

${exitStatusHelp("the library did not load, or the GPUs could not be asked about")}
The report is printed in every case.
`;
}

const OPTIONS = {
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** The command; returns the exit status. `program` is how the user ran it, for --help. */
export function main(argv: readonly string[], program = "bun run inspect"): number {
  let flags: { json?: boolean; help?: boolean };
  try {
    flags = parseFlags(argv, OPTIONS);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`inspect: ${error.message}; see --help.\n`);
    return EXIT.usage;
  }
  if (flags.help === true) {
    process.stdout.write(inspectHelp(program));
    return EXIT.ok;
  }
  const report = inspect();
  process.stdout.write(`${flags.json === true ? JSON.stringify(report, null, 2) : formatInspect(report)}\n`);
  return inspectStatus(report);
}

if (import.meta.main) process.exitCode = main(process.argv.slice(2));
