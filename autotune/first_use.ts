/**
 * The tuner's source of dispatch tables (src/dispatch_tables.ts), which mod.ts installs: the
 * first write of a (GPU, layout) with no stored profile tunes it (unless MLA_KV_AUTOTUNE=0 or a
 * graph capture is open), stores the result, and every later write only looks the table up.
 *
 * Lookup order (autotune/lookup.ts): memory → user file → bundled profile → tune → built-in rule.
 */
import { deviceInfo } from "../src/device.ts";
import { builtinTable, type DispatchTable } from "../src/dispatch.ts";
import type { DispatchTableSource } from "../src/dispatch_tables.ts";
import { layoutKey, type WriteLayout } from "../src/layout_key.ts";
import { captureInProgress } from "../src/capture.ts";
import type { Stream } from "../src/stream.ts";
import { BUCKET_COUNT } from "../src/vocabulary.ts";
import { gpuIdentity } from "./identity.ts";
import { getOrTune, quietRequested as quiet } from "./lookup.ts";
import type { LayoutProfile } from "./profile.ts";
import { tuneOnDevice } from "./tune.ts";

/** A profile's buckets as a dispatch table; buckets past the last tuned one take its launches. */
export function tableFromLayoutProfile(layout: LayoutProfile): DispatchTable {
  const buckets = [...layout.buckets].sort((a, b) => a.bucket - b.bucket);
  const table = [];
  for (let b = 0; b < BUCKET_COUNT; ++b) {
    const entry = buckets[Math.min(b, buckets.length - 1)]!;
    table.push(Object.freeze(entry.ranked.map((c) => Object.freeze({ path: c.path, warps: c.warps, rowsPerWarp: c.rowsPerWarp }))));
  }
  return Object.freeze(table);
}

/** The one line printed when a first use tunes. */
export function tunedLine(gpu: string, key: string, ms: number, layout: LayoutProfile, where: string): string {
  const winners = [...new Set(layout.buckets.map((b) => b.ranked[0]!.path))].join(", ");
  return `mla-kv: tuned ${gpu} for ${key} in ${(ms / 1000).toFixed(2)} s (fastest: ${winners}); profile: ${where}`;
}

/**
 * The dispatch table for `layout` on `device`, tuning on first use when allowed. Never tunes (and
 * never synchronises) while `stream` or this thread is capturing a graph: the stored or bundled
 * profile is used, else the built-in rule, and tuning happens at a later eager call.
 */
export function profiledTable(device: number, layout: WriteLayout, stream?: Stream, env: NodeJS.ProcessEnv = process.env): { table: DispatchTable; final: boolean } {
  const key = layoutKey(layout);
  const capturing = captureInProgress() || (stream !== undefined && !stream.isDefault && stream.isCapturing());
  const say = (line: string) => {
    if (!quiet(env)) process.stderr.write(`${line}\n`);
  };
  let tuned: { ms: number; layout: LayoutProfile } | undefined;
  let result;
  try {
    result = getOrTune({
      identity: gpuIdentity(device),
      layoutKey: key,
      env,
      canTune: !capturing,
      warn: say,
      tune: () => {
        const t0 = performance.now();
        const { profile } = tuneOnDevice(device, layout);
        tuned = { ms: performance.now() - t0, layout: profile };
        return profile;
      },
    });
  } catch (error) {
    // A tune that fails (a GPU out of memory for the scratch buffers, say) must never fail the
    // write it was for: the built-in rule is always correct, only perhaps slower.
    say(`mla-kv: tuning ${key} on device ${device} failed (${(error as Error).message.split("\n")[0]}); using the built-in rule`);
    return { table: builtinTable(), final: true };
  }
  if (tuned && !quiet(env)) {
    const where = result.persisted === false ? `kept in memory (${result.path} not writable)` : result.path;
    process.stderr.write(`${tunedLine(deviceInfo(device).name, key, tuned.ms, tuned.layout, where)}\n`);
  }
  if (result.layout) return { table: tableFromLayoutProfile(result.layout), final: true };
  // No profile: the built-in rule. While capturing, try again at the next eager call.
  return { table: builtinTable(), final: !capturing };
}

/** The source mod.ts installs: stored profiles, tuned on first use. */
export const FIRST_USE_TABLES: DispatchTableSource = Object.freeze({
  tableFor: (device: number, layout: WriteLayout, stream: Stream | undefined) => profiledTable(device, layout, stream),
});
