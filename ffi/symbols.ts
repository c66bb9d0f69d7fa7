/**
 * The functions of libmla_kv's C ABI (cuda/include/mla_kv.h) as data: the one dlopen table.
 *
 * Both runtime adapters (bun:ffi and Deno FFI) build their bindings from this one table, so the
 * argument order and kinds are written down exactly once. Names and section order follow the
 * header so that a diff against it stays readable; tests/ffi/symbols.test.ts parses the header
 * and fails when the two drift apart. The header's constants are in abi.ts.
 *
 * @module
 */

/**
 * How one C argument travels across the boundary.
 *
 * - `"i32"`, `"f32"`: a JS number.
 * - `"i64"`, `"u64"`: a JS number or bigint (sizes, strides, counts).
 * - `"devptr"`: an address the host never dereferences (device memory, a stream, an event, a
 *   graph), carried as a plain JS number; 0 is NULL. Numbers rather than bigints because device
 *   addresses fit in 53 bits and plain numbers keep pointer arithmetic and the hot path cheap.
 * - `"buffer"`: a host TypedArray passed by pointer — out-params such as `int64_t* out` and the
 *   host side of a copy.
 */
export type ArgKind = "i32" | "i64" | "u64" | "f32" | "devptr" | "buffer";

/** What a C function returns: a status code, or a NUL-terminated string read into a JS string. */
export type ReturnKind = "i32" | "cstring";

/** One C function: its argument kinds in order and its return kind. */
export interface SymbolSpec {
  readonly args: readonly ArgKind[];
  readonly returns: ReturnKind;
}

/** The host arrays the library may read or write through a `"buffer"` argument. */
export type HostBuffer =
  | Int8Array
  | Uint8Array
  | Uint8ClampedArray
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

/** Every function of mla_kv.h. */
export const MLA_KV_SYMBOLS = {
  // ---- library identity -------------------------------------------------------------------------
  mla_kv_abi_version: { args: [], returns: "i32" },
  mla_kv_build_id: { args: [], returns: "cstring" },
  mla_kv_last_error: { args: [], returns: "cstring" },

  // ---- driver and devices -----------------------------------------------------------------------
  /** (int32_t* out_version) */
  mla_kv_driver_version: { args: ["buffer"], returns: "i32" },
  /** (int32_t* out_version) */
  mla_kv_runtime_version: { args: ["buffer"], returns: "i32" },
  /** (int32_t* out_count) */
  mla_kv_device_count: { args: ["buffer"], returns: "i32" },
  /** (device, prop, int64_t* out_value) */
  mla_kv_device_property: { args: ["i32", "i32", "buffer"], returns: "i32" },
  /** (device, char* buf, buf_len) */
  mla_kv_device_name: { args: ["i32", "buffer", "i32"], returns: "i32" },

  // ---- memory -----------------------------------------------------------------------------------
  /** (device, bytes, void** out_ptr) */
  mla_kv_malloc: { args: ["i32", "u64", "buffer"], returns: "i32" },
  /** (device, ptr) */
  mla_kv_free: { args: ["i32", "devptr"], returns: "i32" },
  /** (device, dst, host src, bytes, stream) */
  mla_kv_memcpy_htod: { args: ["i32", "devptr", "buffer", "u64", "devptr"], returns: "i32" },
  /** (device, host dst, src, bytes, stream) */
  mla_kv_memcpy_dtoh: { args: ["i32", "buffer", "devptr", "u64", "devptr"], returns: "i32" },
  /** (device, dst, src, bytes, stream) */
  mla_kv_memcpy_dtod: { args: ["i32", "devptr", "devptr", "u64", "devptr"], returns: "i32" },
  /** (device, dst, byte_value, bytes, stream) */
  mla_kv_memset: { args: ["i32", "devptr", "i32", "u64", "devptr"], returns: "i32" },

  // ---- streams, events, graphs ------------------------------------------------------------------
  /** (device, void** out_stream) */
  mla_kv_stream_create: { args: ["i32", "buffer"], returns: "i32" },
  /** (device, stream) */
  mla_kv_stream_destroy: { args: ["i32", "devptr"], returns: "i32" },
  /** (device, stream) */
  mla_kv_stream_release: { args: ["i32", "devptr"], returns: "i32" },
  /** (device, stream) */
  mla_kv_stream_synchronize: { args: ["i32", "devptr"], returns: "i32" },
  /** (device, stream, int32_t* out_capturing) */
  mla_kv_stream_is_capturing: { args: ["i32", "devptr", "buffer"], returns: "i32" },
  /** (device, stream) */
  mla_kv_stream_begin_capture: { args: ["i32", "devptr"], returns: "i32" },
  /** (device, stream, void** out_graph) */
  mla_kv_stream_end_capture: { args: ["i32", "devptr", "buffer"], returns: "i32" },
  /** (device, graph, stream) */
  mla_kv_graph_launch: { args: ["i32", "devptr", "devptr"], returns: "i32" },
  /** (device, graph) */
  mla_kv_graph_destroy: { args: ["i32", "devptr"], returns: "i32" },
  /** (device, void** out_event) */
  mla_kv_event_create: { args: ["i32", "buffer"], returns: "i32" },
  /** (device, event) */
  mla_kv_event_destroy: { args: ["i32", "devptr"], returns: "i32" },
  /** (device, event, stream) */
  mla_kv_event_record: { args: ["i32", "devptr", "devptr"], returns: "i32" },
  /** (device, start, end, float* out_ms) */
  mla_kv_event_elapsed_ms: { args: ["i32", "devptr", "devptr", "buffer"], returns: "i32" },

  // ---- the write --------------------------------------------------------------------------------
  /**
   * (device, stream, cache, capacity, cache_row_stride, loc, loc_elem_bytes, n,
   *  nope, nope_row_stride, nope_bytes, rope, rope_row_stride, rope_bytes,
   *  reserved_slot, path, warps_per_block, rows_per_warp, flags)
   */
  mla_kv_set_kv_buffer: {
    args: [
      "i32", "devptr",
      "devptr", "i64", "i64",
      "devptr", "i32", "i64",
      "devptr", "i64", "i64",
      "devptr", "i64", "i64",
      "i64", "i32", "i32", "i32",
      "i32",
    ],
    returns: "i32",
  },
  /**
   * (device, stream, format, scale_rule, cache, capacity, cache_row_stride, page_size, loc,
   *  loc_elem_bytes, n, source_dtype, nope, nope_row_stride, nope_elems, rope, rope_row_stride,
   *  rope_elems, scale, reserved_slot, path, warps_per_block, rows_per_warp, flags)
   */
  mla_kv_set_kv_buffer_quantized: {
    args: [
      "i32", "devptr", "i32", "i32",
      "devptr", "i64", "i64", "i64",
      "devptr", "i32", "i64",
      "i32",
      "devptr", "i64", "i64",
      "devptr", "i64", "i64",
      "f32", "i64", "i32", "i32", "i32",
      "i32",
    ],
    returns: "i32",
  },
  /** (device, path, int32_t* out_supported) */
  mla_kv_path_supported: { args: ["i32", "i32", "buffer"], returns: "i32" },
  /** (device, stream, int64_t* out_count, int64_t* out_first_index) */
  mla_kv_check_errors: { args: ["i32", "devptr", "buffer", "buffer"], returns: "i32" },
} as const satisfies Record<string, SymbolSpec>;

/** The name of a function in mla_kv.h. */
export type SymbolName = keyof typeof MLA_KV_SYMBOLS;

/** The JS value an adapter accepts for one argument kind. */
export type JsArg<K extends ArgKind> = K extends "i32" | "f32"
  ? number
  : K extends "i64" | "u64"
    ? number | bigint
    : K extends "devptr"
      ? number
      : K extends "buffer"
        ? HostBuffer
        : never;

/** The JS value an adapter returns for one return kind. */
export type JsReturn<R extends ReturnKind> = R extends "i32" ? number : string;

type JsArgs<A extends readonly ArgKind[]> = { -readonly [I in keyof A]: JsArg<A[I]> };

/** The typed JS function an adapter produces for one symbol. */
export type NativeFunction<S extends SymbolSpec> = (...args: JsArgs<S["args"]>) => JsReturn<S["returns"]>;

/** Every function of the library, bound and typed; what `native()` hands out. */
export type MlaKvSymbols = { readonly [K in SymbolName]: NativeFunction<(typeof MLA_KV_SYMBOLS)[K]> };
