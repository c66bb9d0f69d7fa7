/**
 * The Deno FFI implementation of {@link LibraryAdapter}.
 *
 * Deno represents pointers as opaque objects (or null), not numbers, so device addresses are
 * converted on every call and `char*` returns are read with `UnsafePointerView.getCString`.
 * Run with `--allow-ffi --allow-read --allow-env`.
 *
 * @module
 */

import type { LibraryAdapter, OpenedLibrary } from "./library_adapter.ts";
import { MLA_KV_SYMBOLS, type ArgKind, type MlaKvSymbols, type ReturnKind } from "./symbols.ts";

// The slice of Deno's FFI API used here, declared locally so that this file type-checks under
// Bun's types too (the package is type-checked with `types: ["bun"]`).
type DenoNativeType = "i32" | "i64" | "u64" | "f32" | "pointer" | "buffer";
type DenoPointer = object | null;
interface DenoFfi {
  dlopen(
    path: string,
    symbols: Record<string, { parameters: DenoNativeType[]; result: DenoNativeType }>,
  ): { symbols: Record<string, (...args: unknown[]) => unknown>; close(): void };
  UnsafePointer: { create(value: bigint): DenoPointer };
  UnsafePointerView: { getCString(pointer: object): string };
}

const DENO_ARG_TYPE = {
  i32: "i32",
  i64: "i64",
  u64: "u64",
  f32: "f32",
  devptr: "pointer",
  buffer: "buffer",
} as const satisfies Record<ArgKind, DenoNativeType>;

const DENO_RETURN_TYPE = {
  i32: "i32",
  cstring: "pointer",
} as const satisfies Record<ReturnKind, DenoNativeType>;

function deno(): DenoFfi {
  return (globalThis as unknown as { Deno: DenoFfi }).Deno;
}

/** Opens libmla_kv with Deno's FFI. */
export const denoAdapter: LibraryAdapter = {
  runtime: "deno",
  open(path: string): OpenedLibrary {
    const ffi = deno();
    const declarations: Record<string, { parameters: DenoNativeType[]; result: DenoNativeType }> = {};
    for (const [name, spec] of Object.entries(MLA_KV_SYMBOLS)) {
      declarations[name] = {
        parameters: spec.args.map((kind) => DENO_ARG_TYPE[kind]),
        result: DENO_RETURN_TYPE[spec.returns],
      };
    }
    const library = ffi.dlopen(path, declarations);
    const toPointer = (address: unknown): DenoPointer =>
      address === 0 ? null : ffi.UnsafePointer.create(BigInt(address as number));
    const symbols: Record<string, (...args: unknown[]) => unknown> = {};
    for (const [name, spec] of Object.entries(MLA_KV_SYMBOLS)) {
      const fn = library.symbols[name]!;
      const devptrIndices = spec.args.flatMap((kind, i) => (kind === "devptr" ? [i] : []));
      if (spec.returns === "cstring") {
        symbols[name] = () => {
          const pointer = fn() as DenoPointer;
          return pointer === null ? "" : ffi.UnsafePointerView.getCString(pointer);
        };
      } else if (devptrIndices.length === 0) {
        symbols[name] = fn;
      } else {
        symbols[name] = (...args: unknown[]) => {
          for (const i of devptrIndices) args[i] = toPointer(args[i]);
          return fn(...args);
        };
      }
    }
    return { path, symbols: symbols as unknown as MlaKvSymbols, close: () => library.close() };
  },
};
