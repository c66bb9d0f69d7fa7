/**
 * Where a layout's dispatch table comes from. `src/` owns the seam and the default (the built-in
 * rule); the tuner plugs in from above (mod.ts installs autotune/first_use.ts's source, which
 * reads stored profiles and tunes on first use), so the write never imports the tuner. A table is
 * asked for once per (device, layout) and then read from memory on every write: one Map lookup.
 *
 * @module
 */

import { builtinTable, type DispatchTable } from "./dispatch.ts";
import { layoutKey, type WriteLayout } from "./layout_key.ts";
import type { Stream } from "./stream.ts";

/** A supplier of dispatch tables. */
export interface DispatchTableSource {
  /**
   * The table for writes of `layout` on `device`, asked for by a write on `stream` (undefined: the
   * default stream). A source must never tune or synchronise while that stream or this thread is
   * capturing a graph. `final: false` asks to be asked again at the next call (a table given for
   * want of a profile while capturing, say); `final: true` is kept.
   */
  tableFor(device: number, layout: WriteLayout, stream: Stream | undefined): { table: DispatchTable; final: boolean };
}

/** The built-in rule for every layout: what runs with no tuner installed. */
export const BUILTIN_TABLES: DispatchTableSource = Object.freeze({
  tableFor: () => ({ table: builtinTable(), final: true }),
});

let source: DispatchTableSource = BUILTIN_TABLES;
// Keyed by device and layout key.
const tables = new Map<string, DispatchTable>();

/** Installs `next` as the source of tables (forgetting tables already handed out); returns the previous one. */
export function setDispatchTableSource(next: DispatchTableSource): DispatchTableSource {
  const previous = source;
  source = next;
  tables.clear();
  return previous;
}

/** The dispatch table for writes of `layout` on `device`. */
export function tableFor(device: number, layout: WriteLayout, stream: Stream | undefined): DispatchTable {
  const key = `${device}:${layoutKey(layout)}`;
  const known = tables.get(key);
  if (known !== undefined) return known;
  const { table, final } = source.tableFor(device, layout, stream);
  if (final) tables.set(key, table);
  return table;
}

/** Forgets every table handed out (after a re-tune in the same process, and in tests). */
export function clearTables(): void {
  tables.clear();
}
