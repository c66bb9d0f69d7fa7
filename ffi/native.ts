/**
 * The loaded libmla_kv, shared by the whole package.
 *
 * Loading is lazy so that importing mla-kv never fails: the pure parts (validation, dispatch
 * tables) work on machines without the library, and a missing library surfaces as a readable
 * error at the first call that really needs it.
 *
 * @module
 */

import { MlaKvError, type MlaKvErrorCode } from "./errors.ts";
import { envFlag } from "./environment.ts";
import { buildIdMismatch } from "./build_id.ts";
import { diagnoseNoDevice, permissionError } from "./diagnose.ts";
import { openLibrary, type CandidateSource } from "./find_library.ts";
import type { LibraryAdapter, OpenedLibrary } from "./library_adapter.ts";
import { MLA_KV_ABI_VERSION } from "./abi.ts";
import { MLA_KV_SYMBOLS, type ArgKind, type MlaKvSymbols, type SymbolName } from "./symbols.ts";

/** The ABI version this TypeScript code was written against; a library reporting another is refused. */
export const EXPECTED_ABI_VERSION: number = MLA_KV_ABI_VERSION;

// The adapter is chosen once, at module load. Each runtime's module is imported only in that
// runtime, because the other runtime cannot even resolve it (Deno has no "bun:ffi"). The global
// is read through globalThis so this file also type-checks where `Bun` is not declared.
async function runtimeAdapter(): Promise<LibraryAdapter | undefined> {
  const runtimeGlobals = globalThis as { Bun?: unknown; Deno?: unknown };
  if (runtimeGlobals.Bun !== undefined) return (await import("./bun_adapter.ts")).bunAdapter;
  if (runtimeGlobals.Deno !== undefined) return (await import("./deno_adapter.ts")).denoAdapter;
  return undefined;
}

const ADAPTER: LibraryAdapter | undefined = await runtimeAdapter();

/** What is known about the loaded library. */
export interface LoadedLibrary {
  /** The file that was loaded. */
  readonly path: string;
  /** Changes with every build; include it in bug reports. */
  readonly buildId: string;
  readonly abiVersion: number;
  /** Which candidate it was: MLA_KV_LIBRARY, the local build or the prebuilt library. */
  readonly source: CandidateSource;
  /** Why this library was chosen over the other candidates. */
  readonly reason: string;
  /** The bound functions (wrapped for tracing when MLA_KV_TRACE=1). */
  readonly symbols: MlaKvSymbols;
}

let loaded: LoadedLibrary | undefined;

/**
 * Loads libmla_kv on first use and returns it; later calls return the same library. A failed
 * load is not cached, so building the library and calling again works without a restart.
 *
 * @throws {MlaKvError} `LIBRARY_NOT_FOUND` when no candidate loads, `ABI_MISMATCH` when the
 * library was built for another ABI version or (the package's own library) from other CUDA sources,
 * `PERMISSION` when Deno denies a permission the lookup needs, `UNSUPPORTED` outside Bun and Deno.
 */
export function loadLibrary(): LoadedLibrary {
  if (loaded !== undefined) return loaded;
  if (ADAPTER === undefined) {
    throw new MlaKvError("UNSUPPORTED", "mla-kv needs Bun or Deno: this runtime has no FFI adapter");
  }
  try {
    loaded = openChecked(ADAPTER);
  } catch (error) {
    throw permissionError(error) ?? error;
  }
  return loaded;
}

function openChecked(adapter: LibraryAdapter): LoadedLibrary {
  const { library: opened, source, reason, sourceHash } = openLibrary(adapter);
  const abiVersion = opened.symbols.mla_kv_abi_version();
  if (abiVersion !== EXPECTED_ABI_VERSION) {
    opened.close();
    throw new MlaKvError(
      "ABI_MISMATCH",
      `${opened.path} implements ABI version ${abiVersion}, but this mla-kv expects version ${EXPECTED_ABI_VERSION}. ` +
        "Rebuild the library from this package (`bun run build`) or point MLA_KV_LIBRARY at a matching build.",
    );
  }
  // The package's own library (not one named by MLA_KV_LIBRARY) must come from its own sources:
  // the choice read that from the file, and the library itself must say the same (checked against
  // the hash the choice used, so the sources are hashed once per load).
  const buildId = opened.symbols.mla_kv_build_id();
  if (source !== "MLA_KV_LIBRARY") {
    const mismatch = buildIdMismatch(opened.path, buildId, sourceHash);
    if (mismatch !== null) {
      opened.close();
      throw new MlaKvError("ABI_MISMATCH", mismatch);
    }
  }
  const traced = isTraceEnabled() ? traceSymbols(opened) : opened.symbols;
  return { path: opened.path, buildId, abiVersion, source, reason, symbols: traced };
}

/** Which library is loaded, and why that one; what a bug report needs. */
export interface LibraryInfo {
  readonly path: string;
  readonly buildId: string;
  readonly abiVersion: number;
  /** Why this library was chosen (e.g. the local build, preferred to a prebuilt one of the same sources). */
  readonly reason: string;
}

/** The path, build id, ABI version of libmla_kv and why it was chosen, loading it on first use. */
export function libraryInfo(): LibraryInfo {
  const { path, buildId, abiVersion, reason } = loadLibrary();
  return { path, buildId, abiVersion, reason };
}

/** The bound functions of libmla_kv, loading it on first use. */
export function native(): MlaKvSymbols {
  return (loaded ?? loadLibrary()).symbols;
}

const STATUS_CODES: Readonly<Record<number, MlaKvErrorCode>> = {
  1: "INVALID_ARGUMENT",
  2: "UNSUPPORTED",
  3: "NO_DEVICE",
  4: "CUDA",
  5: "OUT_OF_RANGE_LOC",
};

/** The error code for a C status, or undefined for 0 and for statuses this ABI does not define. */
export function codeOfStatus(status: number): MlaKvErrorCode | undefined {
  return STATUS_CODES[status];
}

/**
 * Builds the error for a failed C call. Pure, so the mapping and wording are testable without a
 * library. `cause` is the diagnosed reason of a NO_DEVICE failure ({@link noDeviceCause}).
 */
export function errorFromStatus(status: number, fnName: string, cMessage: string, argument?: string, cause?: string | null): MlaKvError {
  const code = codeOfStatus(status);
  if (code === undefined) {
    // A status outside the header's enum means the library and this code disagree about the ABI.
    return new MlaKvError(
      "ABI_MISMATCH",
      `${fnName} returned status ${status}, which ABI version ${EXPECTED_ABI_VERSION} does not define${cMessage ? `: ${cMessage}` : ""}`,
      argument,
    );
  }
  const said = cMessage || `status ${status} (${code}) with no message`;
  const message = code === "NO_DEVICE" && cause ? `${fnName} failed: ${cause} (CUDA said: ${said})` : `${fnName} failed: ${said}`;
  return new MlaKvError(code, message, argument);
}

/**
 * Throws the {@link MlaKvError} for a non-zero status of `fnName`, with the C library's message,
 * and for NO_DEVICE the real cause. Call it right after the C call: the message belongs to this
 * thread's last failed call.
 */
export function check(status: number, fnName: string, argument?: string): void {
  if (status === 0) return;
  const cMessage = loaded?.symbols.mla_kv_last_error() ?? "";
  const cause = codeOfStatus(status) === "NO_DEVICE" && loaded !== undefined ? diagnoseNoDevice(loaded.symbols, cMessage) : null;
  throw errorFromStatus(status, fnName, cMessage, argument, cause);
}

function isTraceEnabled(): boolean {
  return envFlag("MLA_KV_TRACE", false);
}

/** Renders one argument of a traced call; pure for testing. */
export function formatTraceArg(kind: ArgKind, value: unknown): string {
  if (kind === "devptr") return value === 0 ? "NULL" : `0x${Number(value).toString(16)}`;
  if (kind === "buffer") {
    const view = value as ArrayBufferView & { length?: number };
    return `${view.constructor.name}[${view.length ?? view.byteLength}]`;
  }
  return typeof value === "bigint" ? `${value}n` : String(value);
}

/** The line MLA_KV_TRACE=1 prints for one call; pure for testing. */
export function formatTraceLine(name: string, kinds: readonly ArgKind[], args: readonly unknown[], result: unknown, micros: number): string {
  const rendered = args.map((arg, i) => formatTraceArg(kinds[i] ?? "i64", arg)).join(", ");
  const shown = typeof result === "string" ? JSON.stringify(result) : String(result);
  return `${name}(${rendered}) -> ${shown}  (${micros.toFixed(1)} µs)`;
}

// Tracing wraps every function instead of sprinkling logs through the callers, so the log shows
// exactly what crossed the boundary, in order, including calls made by the error path itself.
function traceSymbols(opened: OpenedLibrary): MlaKvSymbols {
  const raw = opened.symbols as unknown as Record<string, (...args: unknown[]) => unknown>;
  const wrapped: Record<string, (...args: unknown[]) => unknown> = {};
  for (const name of Object.keys(MLA_KV_SYMBOLS) as SymbolName[]) {
    const fn = raw[name]!;
    const kinds = MLA_KV_SYMBOLS[name].args;
    wrapped[name] = (...args: unknown[]) => {
      const start = performance.now();
      const result = fn(...args);
      const micros = (performance.now() - start) * 1000;
      console.error(formatTraceLine(name, kinds, args, result, micros));
      return result;
    };
  }
  return wrapped as unknown as MlaKvSymbols;
}
