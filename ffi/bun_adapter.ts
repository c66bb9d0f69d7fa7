/**
 * The bun:ffi implementation of {@link LibraryAdapter}.
 *
 * @module
 */

import { dlopen, type FFIFunction } from "bun:ffi";
import type { LibraryAdapter, OpenedLibrary } from "./library_adapter.ts";
import { MLA_KV_SYMBOLS, type ArgKind, type MlaKvSymbols, type ReturnKind } from "./symbols.ts";

// bun:ffi takes a plain number for "ptr", so device addresses need no conversion, and a TypedArray
// for "ptr" passes its data pointer. Both kinds therefore map to "ptr" with no wrapper function,
// which matters: the write is called per decode step and a JS shim per call is measurable.
const BUN_ARG_TYPE = {
  i32: "i32",
  i64: "i64",
  u64: "u64",
  f32: "f32",
  devptr: "ptr",
  buffer: "ptr",
} as const satisfies Record<ArgKind, string>;

const BUN_RETURN_TYPE = {
  i32: "i32",
  cstring: "cstring",
} as const satisfies Record<ReturnKind, string>;

/** Builds the bun:ffi declaration of every symbol from the runtime-neutral table. */
export function bunDeclarations(): Record<string, FFIFunction> {
  const declarations: Record<string, FFIFunction> = {};
  for (const [name, spec] of Object.entries(MLA_KV_SYMBOLS)) {
    declarations[name] = {
      args: spec.args.map((kind) => BUN_ARG_TYPE[kind]),
      returns: BUN_RETURN_TYPE[spec.returns],
    };
  }
  return declarations;
}

/** Opens libmla_kv with bun:ffi. */
export const bunAdapter: LibraryAdapter = {
  runtime: "bun",
  open(path: string): OpenedLibrary {
    const library = dlopen(path, bunDeclarations());
    const raw = library.symbols as unknown as Record<string, (...args: unknown[]) => unknown>;
    const symbols: Record<string, (...args: unknown[]) => unknown> = {};
    for (const [name, spec] of Object.entries(MLA_KV_SYMBOLS)) {
      const fn = raw[name]!;
      // Bun may hand back a CString object (a String subclass) or null for a NULL char*; the
      // contract above this layer is a primitive string, so normalise only the cstring returns.
      symbols[name] = spec.returns === "cstring" ? () => String(fn() ?? "") : fn;
    }
    return {
      path,
      symbols: symbols as unknown as MlaKvSymbols,
      close: () => library.close(),
    };
  },
};
