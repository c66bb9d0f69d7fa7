/**
 * mla-kv: writes DeepSeek-style MLA rows (a nope part and a rope part) into a paged KV cache on an
 * NVIDIA GPU, through libmla_kv's C ABI.
 *
 * @example
 * ```ts
 * import { allocTensor, fromHost, setMlaKvBuffer, Stream } from "mla-kv";
 *
 * using stream = Stream.create();
 * using kvBuffer = allocTensor("bf16", [64, 16, 576]);
 * using kNope = fromHost(new Uint16Array(2 * 512), "bf16", [2, 512]);
 * using kRope = fromHost(new Uint16Array(2 * 64), "bf16", [2, 64]);
 * using loc = fromHost(new Int32Array([3, 40]), "i32", [2]);
 * setMlaKvBuffer(kvBuffer, loc, kNope, kRope, { stream });
 * stream.synchronize();
 * ```
 *
 * @module
 */

/**
 * Writes n MLA rows into their cache slots; asynchronous on the given stream.
 * See {@link SetMlaKvBufferOptions} for stream and forced-path options.
 */
export { setMlaKvBuffer } from "./src/set_mla_kv_buffer.ts";
/** Options of {@link setMlaKvBuffer}. */
export type { SetMlaKvBufferOptions } from "./src/set_mla_kv_buffer.ts";

/** Process-wide defaults of the write's options (the reserved padding slot, PDL). */
export { setWriteDefaults, writeDefaults } from "./src/write_defaults.ts";
/** The options that have a process-wide default. */
export type { WriteDefaults } from "./src/write_defaults.ts";

/** How a write stores rows: a byte copy, or fp8 quantized in the write; the ds_mla row layout. */
export { DS_MLA, FLAT_FP8 } from "./src/write_format.ts";
/** Write formats and the source dtypes a quantizing write reads. */
export type { QuantizedFormat, SourceDtype, WriteFormat } from "./src/write_format.ts";
/** The formats a caller may ask for in `options.format`. */
export type { RequestedFormat } from "./src/layout.ts";

/** Waits for a stream and throws `OUT_OF_RANGE_LOC` if earlier writes on it skipped rows. */
export { checkErrors } from "./src/check_errors.ts";
/** Which stream {@link checkErrors} checks. */
export type { CheckErrorsOptions } from "./src/check_errors.ts";

/** A tensor in GPU memory (metadata plus a device address), and its factories. */
export { DeviceTensor, allocTensor, fromHost, wrapDevicePointer } from "./src/tensor.ts";
/** Options and inputs of the tensor factories and copies. */
export type { AllocOptions, CopyOptions, WrapDevicePointerInit } from "./src/tensor.ts";

/** Element types, their sizes and the host arrays that carry their bits. */
export { DTYPES } from "./src/dtypes.ts";
/** A dtype name, and the host array of each dtype. */
export type { DType, DTypeInfo, HostArray, HostArrayOf } from "./src/dtypes.ts";

/** CUDA streams, captured graphs, events, and GPU timing of a block of work. */
export { Event, Graph, Stream, timeOnStream } from "./src/stream.ts";

/** The number of visible GPUs, their properties, and whether a write path runs on one. */
export { deviceCount, deviceInfo, supportsPath } from "./src/device.ts";
/** Properties of one GPU. */
export type { DeviceInfo } from "./src/device.ts";

/** The error type of every mla-kv failure, with a stable `code`. */
export { MlaKvError } from "./ffi/errors.ts";
/** The stable codes of {@link MlaKvError}. */
export type { MlaKvErrorCode } from "./ffi/errors.ts";

/** Kernel paths and launch configurations chosen per call by the dispatch table. */
export type { DispatchEntry, DispatchTable, LaunchConfig, Path, RowsPerWarp, Warps } from "./src/dispatch.ts";

/** Which libmla_kv file is loaded, its build id and ABI version (loads it on first use). */
export { libraryInfo, EXPECTED_ABI_VERSION } from "./ffi/native.ts";
/** What {@link libraryInfo} returns. */
export type { LibraryInfo } from "./ffi/native.ts";
