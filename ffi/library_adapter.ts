/**
 * The seam between mla-kv and a runtime's FFI.
 *
 * Everything above this interface deals only in JS numbers, bigints and TypedArrays (see
 * `JsArg` in symbols.ts); each adapter translates those into its runtime's own pointer types.
 * That keeps the rest of the package runtime-neutral: Bun passes a device address as a plain
 * number, Deno wants `Deno.UnsafePointer.create(BigInt(n))`, and only the adapter knows.
 *
 * @module
 */

import type { MlaKvSymbols } from "./symbols.ts";

/** A loaded libmla_kv. */
export interface OpenedLibrary {
  /** The file that was loaded. */
  readonly path: string;
  /** Every function of mla_kv.h, typed by the table in symbols.ts. */
  readonly symbols: MlaKvSymbols;
  /** Unloads the library; calling a symbol afterwards is undefined behaviour. */
  close(): void;
}

/** One runtime's way of loading libmla_kv. */
export interface LibraryAdapter {
  /** Which runtime this adapter serves, for messages. */
  readonly runtime: string;
  /**
   * Loads the shared library at `path` and binds every symbol of the table. Throws whatever the
   * runtime throws when the file is missing, is not a library, or lacks a symbol; the caller
   * (find_library.ts) turns that into one readable error.
   */
  open(path: string): OpenedLibrary;
}
