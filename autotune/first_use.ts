/**
 * Dispatch tables from profiles: the first write of a (GPU, layout) with no stored profile tunes
 * it (unless MLA_KV_AUTOTUNE=0 or a graph capture is open), stores the result, and every later
 * write only looks the table up.
 *
 * Lookup order (autotune/lookup.ts): memory → user file → bundled profile → tune → built-in rule.
 */
import { builtinTable, BUCKET_COUNT, layoutKey, type DispatchTable, type LayoutKeyInput } from "../src/dispatch.ts";
import { deviceInfo, supportsPath } from "../src/device.ts";
import { layoutAllowsTma } from "../src/layout.ts";
import { captureInProgress, type Stream } from "../src/stream.ts";
import { gpuIdentity } from "./identity.ts";
import { getOrTune, quietRequested as quiet } from "./lookup.ts";
import { createMeasurer } from "./measure.ts";
import type { Choice, LayoutProfile } from "./profile.ts";
import { tuneLayoutWithStats } from "./search.ts";

/** A profile's buckets as a dispatch table: bucket b's best and best-vector choices. */
export function tableFromLayoutProfile(layout: LayoutProfile): DispatchTable {
  const strip = (c: Choice) => Object.freeze({ path: c.path, warps: c.warps, rowsPerWarp: c.rowsPerWarp });
  const buckets = [...layout.buckets].sort((a, b) => a.bucket - b.bucket);
  const table = [];
  for (let b = 0; b < BUCKET_COUNT; ++b) {
    // Past the last measured bucket the choice is the last one's: large n is flat.
    const entry = buckets[Math.min(b, buckets.length - 1)]!;
    table.push(Object.freeze({ best: strip(entry.best), vector: strip(entry.bestVector) }));
  }
  return Object.freeze(table);
}

/** The one line printed when a first use tunes. */
export function tunedLine(gpu: string, key: string, ms: number, crossoverN: number | null, tmaAllowed: boolean, where: string): string {
  const crossover = !tmaAllowed ? "TMA not available" : crossoverN === null ? "TMA never wins" : `TMA from n = ${crossoverN}`;
  return `mla-kv: tuned ${gpu} for ${key} in ${(ms / 1000).toFixed(2)} s (${crossover}); profile: ${where}`;
}

/**
 * The dispatch table for `layout` on `device`, tuning on first use when allowed. Never tunes (and
 * never synchronises) while `stream` or this thread is capturing a graph: the stored or bundled
 * profile is used, else the built-in rule, and tuning happens at a later eager call.
 */
export function profiledTable(device: number, layout: LayoutKeyInput, stream?: Stream, env: NodeJS.ProcessEnv = process.env): { table: DispatchTable; final: boolean } {
  const identity = gpuIdentity(device);
  const key = layoutKey(layout);
  const capturing = captureInProgress() || (stream !== undefined && !stream.isDefault && stream.isCapturing());
  const tmaAllowed = supportsPath(device, "tma") && layoutAllowsTma(layout);
  const say = (line: string) => {
    if (!quiet(env)) process.stderr.write(`${line}\n`);
  };
  let tuned: { ms: number; crossoverN: number | null } | undefined;
  let result;
  try {
    result = getOrTune({
      identity,
      layoutKey: key,
      env,
      canTune: !capturing,
      warn: say,
      tune: () => {
        const t0 = performance.now();
        const measurer = createMeasurer(device, layout);
        try {
          const { profile } = tuneLayoutWithStats({ measure: measurer.measure, tmaAllowed, method: "search" });
          tuned = { ms: performance.now() - t0, crossoverN: profile.crossoverN };
          return profile;
        } finally {
          measurer.free();
        }
      },
    });
  } catch (error) {
    // A tune that fails (a GPU out of memory for the scratch buffers, say) must never fail the
    // write it was for: the built-in rule is always correct, only perhaps slower.
    say(`mla-kv: tuning ${key} on device ${device} failed (${(error as Error).message.split("\n")[0]}); using the built-in rule`);
    return { table: builtinTable(deviceInfo(device).computeCapability[0]), final: true };
  }
  if (tuned && !quiet(env)) {
    const where = result.persisted === false ? `kept in memory (${result.path} not writable)` : result.path;
    process.stderr.write(`${tunedLine(deviceInfo(device).name, key, tuned.ms, tuned.crossoverN, tmaAllowed, where)}\n`);
  }
  if (result.layout) return { table: tableFromLayoutProfile(result.layout), final: true };
  // No profile: the built-in rule. While capturing, try again at the next eager call.
  return { table: builtinTable(deviceInfo(device).computeCapability[0]), final: !capturing };
}
