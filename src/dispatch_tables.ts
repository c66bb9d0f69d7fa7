/**
 * Where dispatch tables come from.
 *
 * Today every table is the built-in rule for the GPU's architecture. The signature already takes
 * the layout and a stream so that a tuned source (measured per GPU and layout, possibly timed on
 * the caller's stream) can replace the body without touching callers.
 *
 * @module
 */

import { deviceInfo } from "./device.ts";
import { builtinTable, layoutKey, type DispatchTable, type LayoutKeyInput } from "./dispatch.ts";
import type { Stream } from "./stream.ts";

// Keyed by device and layout; a table is built once and then only looked up, per write.
const tables = new Map<string, DispatchTable>();

/**
 * The dispatch table for writes of `layout` on `device`. `stream` is where a tuner would time
 * candidates; the built-in rule does not use it.
 */
export function tableFor(device: number, layout: LayoutKeyInput, stream?: Stream): DispatchTable {
  void stream;
  const key = `${device}:${layoutKey(layout)}`;
  let table = tables.get(key);
  if (table === undefined) {
    table = builtinTable(deviceInfo(device).computeCapability[0]);
    tables.set(key, table);
  }
  return table;
}
