/**
 * Device tensors: a device address plus the shape, strides and dtype that say how to read it.
 *
 * A DeviceTensor does no math. It exists so that callers describe their buffers once (including
 * strided views such as the nope part of a wider projection) and mla-kv can derive every byte
 * offset and stride the C call needs, and check them, from that description.
 *
 * @module
 */

import { check, native } from "../ffi/native.ts";
import { refuseDuringCapture, type CapturedUse, type GraphHold } from "./capture.ts";
import { checkStreamErrors } from "./error_slots.ts";
import { DTYPES, type DType, type HostArrayOf } from "./dtypes.ts";
import { describeValue, invalidArgument, MlaKvError } from "../ffi/errors.ts";
import { streamHandleFor, type Stream } from "./stream.ts";
import {
  contiguousStrides,
  describeNumber,
  isContiguousLayout,
  validateDType,
  validateDevice,
  validateOptionKeys,
  validatePointer,
  validateShape,
  validateStrides,
} from "./validate.ts";

/** Options of calls that issue a copy. */
export interface CopyOptions {
  /** The stream to order the copy on; default: the device's default stream. */
  stream?: Stream;
}

/** Options of the allocating factories. */
export interface AllocOptions {
  /** CUDA device index; default 0. */
  device?: number;
}

/**
 * @internal One device allocation, shared by a tensor and every view of it, so that freeing the
 * owner marks all views as disposed: a view must not outlive the memory it points into. Graphs
 * that captured writes using it hold it; its memory goes back when it was freed and none does.
 */
export class Allocation implements GraphHold {
  /** The owner's free() ran: the memory is no longer the caller's to use. */
  freed = false;
  #graphs = 0;
  #returned = false;

  /** `owned`: mla-kv allocated it (allocTensor, fromHost) and frees it; else someone else owns it. */
  constructor(
    readonly device: number,
    readonly ptr: number,
    readonly owned: boolean,
  ) {}

  /** The owner's free(): the memory goes back now, or when the last graph holding it is destroyed. */
  free(): void {
    if (this.owned && this.#graphs === 0) this.#giveBack();
    this.freed = true;
  }

  hold(): void {
    this.#graphs++;
  }

  release(): void {
    this.#graphs--;
    if (this.#graphs === 0 && this.freed && this.owned) this.#giveBack();
  }

  #giveBack(): void {
    if (this.#returned) return;
    check(native().mla_kv_free(this.device, this.ptr), "mla_kv_free");
    this.#returned = true;
  }
}

/** @internal The fields a DeviceTensor is built from; use the factories instead. */
export interface DeviceTensorInit<D extends DType> {
  device: number;
  ptr: number;
  dtype: D;
  shape: readonly number[];
  strides: readonly number[];
  owned: boolean;
  allocation: Allocation;
}

/**
 * A tensor in GPU memory, described by metadata only.
 *
 * Owned tensors (from {@link allocTensor} and {@link fromHost}) must be freed with
 * {@link DeviceTensor.free} or a `using` declaration; device memory is not garbage-collected,
 * because freeing it at an unpredictable moment could race with kernels still using it.
 */
export class DeviceTensor<D extends DType = DType> implements CapturedUse {
  /** CUDA device index. */
  readonly device: number;
  /** Element type. */
  readonly dtype: D;
  /** Size of each dimension. */
  readonly shape: readonly number[];
  /** Step between neighbours of each dimension, in elements (not bytes). */
  readonly strides: readonly number[];
  /** True when freeing this tensor frees device memory (false for views and wrapped pointers). */
  readonly owned: boolean;
  readonly #ptr: number;
  readonly #allocation: Allocation;
  #disposed = false;

  /** @internal Use {@link allocTensor}, {@link fromHost}, {@link wrapDevicePointer} or a view method. */
  constructor(init: DeviceTensorInit<D>) {
    this.device = init.device;
    this.#ptr = init.ptr;
    this.dtype = init.dtype;
    this.shape = init.shape;
    this.strides = init.strides;
    this.owned = init.owned;
    this.#allocation = init.allocation;
  }

  /** The device address of element [0, 0, …] as a number. */
  get ptr(): number {
    DeviceTensor.#assertLive(this, "ptr");
    return this.#ptr;
  }

  /** True once this tensor, or the tensor whose memory it views, was freed. */
  get disposed(): boolean {
    // An object that only inherits from DeviceTensor.prototype has none of a tensor's fields;
    // every use of a tensor passes through here first.
    if (!(#allocation in this)) {
      throw invalidArgument(
        "tensor",
        "expected a DeviceTensor from allocTensor, fromHost, wrapDevicePointer or a view of one, got an object that only has DeviceTensor's prototype",
      );
    }
    return this.#disposed || this.#allocation.freed;
  }

  /** Number of elements. */
  get numel(): number {
    let count = 1;
    for (const size of this.shape) count *= size;
    return count;
  }

  /** Bytes per element. */
  get elementBytes(): number {
    return DTYPES[this.dtype].bytes;
  }

  /** True when the elements form one dense row-major block. */
  isContiguous(): boolean {
    return isContiguousLayout(this.shape, this.strides);
  }

  /**
   * Copies `host` into this tensor, ordered on `options.stream`. The tensor must be contiguous
   * and `host` must be the dtype's host array (see {@link DTYPES}) with exactly `numel` elements.
   */
  upload(host: HostArrayOf[D], options?: CopyOptions): void {
    const ptr = this.ptr;
    refuseDuringCapture("DeviceTensor.upload()", "a copy from host memory cannot be recorded into a graph");
    const opts = validateOptionKeys(options, "options", ["stream"]);
    this.#assertContiguous("upload");
    const HostArray = DTYPES[this.dtype].HostArray;
    if (!(host instanceof HostArray)) {
      throw invalidArgument("host", `expected a ${HostArray.name} for dtype ${this.dtype}, got ${describeValue(host)}`);
    }
    if (host.length !== this.numel) {
      throw invalidArgument("host", `expected ${this.numel} elements for shape [${this.shape.join(", ")}], got ${host.length}`);
    }
    const stream = streamHandleFor(opts?.stream as Stream | undefined, this.device, "options.stream");
    if (host.length === 0) return;
    check(native().mla_kv_memcpy_htod(this.device, ptr, host, host.byteLength, stream), "mla_kv_memcpy_htod");
  }

  /**
   * Copies this tensor to a new host array. Waits for `options.stream` (so earlier writes on it
   * are visible), then reports, as {@link checkErrors} does, rows that writes on that stream
   * skipped: reading a cache back is when a caller wants to know that some rows were skipped.
   *
   * @throws {MlaKvError} `OUT_OF_RANGE_LOC` when earlier writes on the stream skipped rows (the
   * copy itself completed; call again to get the data); `CAPTURE` while a stream is being captured.
   */
  download(options?: CopyOptions): HostArrayOf[D] {
    const ptr = this.ptr;
    refuseDuringCapture("DeviceTensor.download()", "it waits for the GPU, whose work is only being recorded");
    const opts = validateOptionKeys(options, "options", ["stream"]);
    this.#assertContiguous("download");
    const stream = streamHandleFor(opts?.stream as Stream | undefined, this.device, "options.stream");
    const host = new DTYPES[this.dtype].HostArray(this.numel) as HostArrayOf[D];
    if (host.length > 0) {
      check(native().mla_kv_memcpy_dtoh(this.device, host, ptr, host.byteLength, stream), "mla_kv_memcpy_dtoh");
    }
    // Waits for the stream (the copy included), then reads that stream's error slot.
    checkStreamErrors(this.device, stream);
    return host;
  }

  /**
   * A view of `length` entries of dimension `dim` starting at `start`: same strides, shifted
   * address. This is how strided sources are made, e.g. the nope and rope parts of one wider
   * projection: `kv.narrow(1, 0, 512)` and `kv.narrow(1, 512, 64)`. Negative `dim` counts from
   * the end.
   */
  narrow(dim: number, start: number, length: number): DeviceTensor<D> {
    DeviceTensor.#assertLive(this, "narrow");
    const rank = this.shape.length;
    if (!Number.isInteger(dim) || dim < -rank || dim >= rank) {
      throw invalidArgument("dim", `expected an integer in [${-rank}, ${rank}) for shape [${this.shape.join(", ")}], got ${describeNumber(dim)}`);
    }
    const d = dim < 0 ? dim + rank : dim;
    const size = this.shape[d]!;
    if (!Number.isSafeInteger(start) || start < 0 || start > size) {
      throw invalidArgument("start", `expected an integer in [0, ${size}] (dimension ${d} has size ${size}), got ${describeNumber(start)}`);
    }
    if (!Number.isSafeInteger(length) || length < 0 || start + length > size) {
      throw invalidArgument("length", `expected an integer in [0, ${size - start}] (dimension ${d} has size ${size}, start ${start}), got ${describeNumber(length)}`);
    }
    const shape = [...this.shape];
    shape[d] = length;
    const ptr = this.#ptr + start * this.strides[d]! * this.elementBytes;
    // Addresses are carried as numbers, exact only below 2^53 (see validatePointer).
    if (!Number.isSafeInteger(ptr)) {
      throw invalidArgument("start", `the view would begin at address ${ptr}, past 2^53 - 1, which mla-kv cannot carry exactly`);
    }
    return this.#derive(ptr, Object.freeze(shape), this.strides);
  }

  /** A contiguous view with another shape of the same element count, e.g. [n, d] → [n, 1, d]. */
  view(shape: readonly number[]): DeviceTensor<D> {
    DeviceTensor.#assertLive(this, "view");
    const newShape = validateShape(shape, "shape", true);
    this.#assertContiguous("view");
    const count = newShape.reduce((a, b) => a * b, 1);
    if (count !== this.numel) {
      throw invalidArgument("shape", `expected ${this.numel} elements (shape [${this.shape.join(", ")}]), got [${newShape.join(", ")}] with ${count}`);
    }
    return this.#derive(this.#ptr, newShape, Object.freeze(contiguousStrides(newShape)));
  }

  /**
   * Frees the device memory of an owned tensor (its views become disposed too); for views and
   * wrapped pointers only marks this object disposed. Safe to call twice. While a graph that
   * captured a write using the memory lives, the memory itself is freed only when the last such
   * graph is destroyed (so a replay never touches freed memory); the tensor is disposed at once.
   *
   * @throws {MlaKvError} `CAPTURE` while a stream is being captured.
   */
  free(): void {
    if (this.disposed) {
      this.#disposed = true;
      return;
    }
    if (this.owned) {
      refuseDuringCapture("DeviceTensor.free()", "the graph being recorded may use the memory");
      this.#allocation.free();
    }
    this.#disposed = true;
  }

  /** @internal What a graph that captures a write using this tensor keeps alive (its owner's memory). */
  graphHold(): GraphHold | null {
    return this.#allocation.owned ? this.#allocation : null;
  }

  [Symbol.dispose](): void {
    this.free();
  }

  #derive(ptr: number, shape: readonly number[], strides: readonly number[]): DeviceTensor<D> {
    return new DeviceTensor({ device: this.device, ptr, dtype: this.dtype, shape, strides, owned: false, allocation: this.#allocation });
  }

  // Static, so that an object without a tensor's fields reaches the check in `disposed` rather
  // than failing the brand check of a private method with a TypeError.
  static #assertLive(tensor: DeviceTensor, operation: string): void {
    if (tensor.disposed) {
      const why = tensor.#disposed ? "this tensor was freed" : "the tensor it views was freed";
      throw new MlaKvError("DISPOSED", `cannot use ${operation} of a disposed DeviceTensor: ${why}`, "tensor");
    }
  }

  #assertContiguous(operation: string): void {
    if (!this.isContiguous()) {
      throw invalidArgument(
        "tensor",
        `${operation} needs a contiguous tensor, got shape [${this.shape.join(", ")}] with strides [${this.strides.join(", ")}]`,
      );
    }
  }
}

/** Allocates an uninitialised contiguous tensor on `options.device` (default 0). */
export function allocTensor<D extends DType>(dtype: D, shape: readonly number[], options?: AllocOptions): DeviceTensor<D> {
  validateDType(dtype, "dtype");
  refuseDuringCapture("allocTensor()", "allocating device memory would invalidate the capture");
  // Zero-sized allocations are refused: CUDA may return NULL for them, and a NULL tensor is
  // indistinguishable from a bug downstream.
  const dims = validateShape(shape, "shape", false);
  const opts = validateOptionKeys(options, "options", ["device"]);
  const device = validateDevice(opts?.device ?? 0, "options.device");
  const bytes = dims.reduce((a, b) => a * b, 1) * DTYPES[dtype].bytes;
  if (!Number.isSafeInteger(bytes)) throw invalidArgument("shape", `expected at most 2^53 - 1 bytes, got [${dims.join(", ")}] of ${dtype}`);
  const out = new BigUint64Array(1);
  check(native().mla_kv_malloc(device, bytes, out), "mla_kv_malloc");
  const ptr = Number(out[0]);
  return new DeviceTensor({
    device,
    ptr,
    dtype,
    shape: dims,
    strides: Object.freeze(contiguousStrides(dims)),
    owned: true,
    allocation: new Allocation(device, ptr, true),
  });
}

/**
 * Allocates a tensor of `shape` and copies `host` into it (ordered on `options.stream`).
 *
 * @example
 * ```ts
 * const loc = fromHost(new BigInt64Array([5n, 9n, -1n]), "i64", [3]);
 * ```
 */
export function fromHost<D extends DType>(
  host: HostArrayOf[D],
  dtype: D,
  shape: readonly number[],
  options?: AllocOptions & CopyOptions,
): DeviceTensor<D> {
  const opts = validateOptionKeys(options, "options", ["device", "stream"]);
  const tensor = allocTensor(dtype, shape, opts?.device === undefined ? undefined : { device: opts.device as number });
  try {
    tensor.upload(host, opts?.stream === undefined ? undefined : { stream: opts.stream as Stream });
  } catch (error) {
    tensor.free();
    throw error;
  }
  return tensor;
}

/** Describes memory that someone else allocated; see {@link wrapDevicePointer}. */
export interface WrapDevicePointerInit<D extends DType> {
  /** Device address of element [0, 0, …]; a number or bigint, never 0. */
  ptr: number | bigint;
  dtype: D;
  /** Dimensions may be 0 (an empty batch). */
  shape: readonly number[];
  /** In elements; default: contiguous row-major. */
  strides?: readonly number[];
  /** CUDA device index; default 0. */
  device?: number;
  /**
   * Bytes the foreign allocation holds from `ptr` on. When given, a shape and strides that would
   * reach past it are refused here, before any kernel could write out of bounds.
   */
  bytes?: number;
}

/**
 * A tensor over memory owned by someone else (another library, a framework's allocator). Its
 * `free()` never frees the memory; it only marks this object disposed.
 *
 * @example
 * ```ts
 * const kvBuffer = wrapDevicePointer({ ptr: cacheAddress, dtype: "bf16", shape: [pages, 64, 576] });
 * ```
 */
export function wrapDevicePointer<D extends DType>(init: WrapDevicePointerInit<D>): DeviceTensor<D> {
  const fields = validateOptionKeys(init, "init", ["ptr", "dtype", "shape", "strides", "device", "bytes"]);
  if (fields === undefined) throw invalidArgument("init", "expected { ptr, dtype, shape, strides?, device? }, got undefined");
  const ptr = validatePointer(fields.ptr, "ptr");
  const dtype = validateDType(fields.dtype, "dtype") as D;
  const shape = validateShape(fields.shape, "shape", true);
  const strides = fields.strides === undefined ? Object.freeze(contiguousStrides(shape)) : validateStrides(fields.strides, shape, "strides");
  const device = validateDevice(fields.device ?? 0, "device");
  if (fields.bytes !== undefined) {
    const bytes = fields.bytes;
    if (typeof bytes !== "number" || !Number.isSafeInteger(bytes) || bytes < 0) {
      throw invalidArgument("bytes", `expected the allocation's size in bytes (an integer >= 0), got ${describeValue(bytes)}`);
    }
    // The last element addressed is at sum((shape[i] - 1) * strides[i]); an empty tensor addresses nothing.
    const empty = shape.some((d) => d === 0);
    const span = empty ? 0 : (shape.reduce((last, d, i) => last + (d - 1) * strides[i]!, 0) + 1) * DTYPES[dtype].bytes;
    if (span > bytes) {
      throw invalidArgument("shape", `expected a tensor within the ${bytes}-byte allocation at 0x${ptr.toString(16)}, but shape [${shape.join(", ")}] with strides [${strides.join(", ")}] of ${dtype} reaches ${span} bytes`);
    }
  }
  return new DeviceTensor({ device, ptr, dtype, shape, strides, owned: false, allocation: new Allocation(device, ptr, false) });
}
