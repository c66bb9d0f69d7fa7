/**
 * Where dispatch tables come from: the per-GPU profile (memory → user file → bundled → tuned on
 * first use → built-in rule, see autotune/first_use.ts), looked up once per (device, layout) and
 * then read from memory on every write, so a call pays one Map lookup for it.
 *
 * @module
 */

import { profiledTable } from "../autotune/first_use.ts";
import { layoutKey, type DispatchTable, type LayoutKeyInput } from "./dispatch.ts";
import type { Stream } from "./stream.ts";

// Keyed by device and layout. A table obtained while a capture was open (the built-in rule, for
// want of a profile) is not kept, so the next eager call can still tune.
const tables = new Map<string, DispatchTable>();

/** The dispatch table for writes of `layout` on `device`; `stream` tells whether a capture is open. */
export function tableFor(device: number, layout: LayoutKeyInput, stream?: Stream): DispatchTable {
  const key = `${device}:${layoutKey(layout)}`;
  const known = tables.get(key);
  if (known !== undefined) return known;
  const { table, final } = profiledTable(device, layout, stream);
  if (final) tables.set(key, table);
  return table;
}

/** Forgets every table (after `bun run autotune --force` in the same process, and in tests). */
export function clearTables(): void {
  tables.clear();
}
