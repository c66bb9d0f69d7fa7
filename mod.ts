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

// First-use tuning is the write's default behaviour: the tuner's table source is installed here,
// above both, so src/ never imports autotune/.
import { FIRST_USE_TABLES } from "./autotune/first_use.ts";
import { setDispatchTableSource } from "./src/dispatch_tables.ts";

setDispatchTableSource(FIRST_USE_TABLES);

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

/** The byte geometry of the fp8 formats: the V3.2 row, the V4 and indexer pages, flat fp8 shapes. */
export { DS_MLA, DS_V4, FLAT_FP8, INDEXER, pageBytes } from "./src/write_format.ts";
/** The words of the options: write formats, scale rules, source dtypes, paths and launch shapes. */
export type { Path, QuantizedFormat, RequestedFormat, RowsPerWarp, ScaleRule, SourceDtype, Warps, WriteFormat } from "./src/vocabulary.ts";

/** Tunes chosen layouts now (the recommended start-up step, before the KV pool is allocated). */
export { autotune } from "./autotune/autotune.ts";
/** Options, layouts and outcomes of {@link autotune}. */
export type { AutotuneOptions, AutotuneOutcome, LayoutSpec } from "./autotune/autotune.ts";

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
/** Why a GPU cannot be used here (no driver, an old one, none visible, no library), or null. */
export { gpuProblem } from "./src/device.ts";
/** Properties of one GPU. */
export type { DeviceInfo } from "./src/device.ts";

/** The error type of every mla-kv failure, with a stable `code`. */
export { MlaKvError } from "./ffi/errors.ts";
/** The stable codes of {@link MlaKvError}. */
export type { MlaKvErrorCode } from "./ffi/errors.ts";

/** Which libmla_kv file is loaded, its build id and ABI version (loads it on first use). */
export { libraryInfo } from "./ffi/native.ts";
/** What {@link libraryInfo} returns. */
export type { LibraryInfo } from "./ffi/native.ts";
