#!/usr/bin/env bun
/**
 * `bun run inspect` (or `bunx mla-kv inspect`): what this machine offers mla-kv — the library file
 * in use and its build, each GPU with its properties and the paths it can run, and the profile
 * its writes will use (user file, bundled, or none yet). Useful on a machine with no GPU too.
 *
 *   bun run inspect [--json]
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { libraryInfo } from "../ffi/native.ts";
import { deviceCount, deviceInfo, supportsPath } from "../src/device.ts";
import { cacheDir, profilePath } from "../autotune/cache_dir.ts";
import { gpuIdentity, PACKAGE_VERSION } from "../autotune/identity.ts";
import { BUNDLED_PROFILES_DIR } from "../autotune/lookup.ts";
import { identityKey, type Profile } from "../autotune/profile.ts";
import { readProfileFile } from "../autotune/store.ts";

interface ProfileReport {
  source: "user" | "bundled" | "none";
  path: string | null;
  createdAt?: string;
  layouts?: Record<string, { tunedAt: string; crossoverN: number | null; method: string }>;
  note?: string;
}

export interface InspectReport {
  packageVersion: string;
  library: { path: string; buildId: string; abiVersion: number } | { error: string };
  cacheDir: string;
  gpus: Array<Record<string, unknown>> | { error: string };
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0]!;
}

function summarise(profile: Profile): Pick<ProfileReport, "createdAt" | "layouts"> {
  const layouts: ProfileReport["layouts"] = {};
  for (const [key, layout] of Object.entries(profile.layouts)) {
    layouts[key] = { tunedAt: layout.tunedAt, crossoverN: layout.crossoverN, method: layout.method };
  }
  return { createdAt: profile.createdAt, layouts };
}

/** The profile a GPU's writes will read: the user file if valid, else a bundled one, else none. */
function profileFor(device: number, dir: string): ProfileReport {
  const identity = gpuIdentity(device);
  const user = profilePath(dir, identity);
  const mine = readProfileFile(user, identity);
  if (mine.ok) return { source: "user", path: user, ...summarise(mine.profile) };
  const bundled = join(BUNDLED_PROFILES_DIR, `${identityKey(identity)}.json`);
  const shipped = readProfileFile(bundled, identity);
  if (shipped.ok) return { source: "bundled", path: bundled, ...summarise(shipped.profile) };
  const note = mine.reason === "missing" ? "none yet: the first write of each layout tunes it (about 0.2 s)" : `user file ${mine.reason}: ${mine.detail}; it will be replaced`;
  return { source: "none", path: null, note };
}

export function inspect(env: NodeJS.ProcessEnv = process.env): InspectReport {
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
    return { packageVersion: PACKAGE_VERSION, library, cacheDir: dir, gpus: { error: firstLine(error) } };
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
      profile: profileFor(device, dir),
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
  lines.push(`GPUs: ${r.gpus.length}`);
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
        const crossover = l.crossoverN === null ? "TMA never takes over" : `TMA from n = ${l.crossoverN}`;
        lines.push(`       ${key.padEnd(28)} tuned ${l.tunedAt} (${l.method}), ${crossover}`);
      }
    }
  }
  return lines.join("\n");
}

export function main(argv: readonly string[]): number {
  let json = false;
  try {
    json = parseArgs({ args: [...argv], options: { json: { type: "boolean", default: false } }, strict: true }).values.json ?? false;
  } catch (error) {
    console.error(`inspect: ${firstLine(error)}; usage: bun run inspect [--json]`);
    return 2;
  }
  const report = inspect();
  console.log(json ? JSON.stringify(report, null, 2) : formatInspect(report));
  return 0;
}

if (import.meta.main) process.exit(main(process.argv.slice(2)));
