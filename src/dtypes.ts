/**
 * Element types of device tensors.
 *
 * The write itself is a byte copy, so a dtype here is only a size and the host array that holds
 * its bits. JS has no bf16, fp16 or fp8 numbers, so those travel as their raw bit patterns
 * (Uint16Array, Uint8Array); converting values is the caller's business.
 *
 * @module
 */

/** The element types mla-kv knows. */
export type DType = "bf16" | "fp16" | "u8" | "fp8_e4m3" | "fp8_e5m2" | "i32" | "i64";

/** The host array that carries each dtype's bits. */
export interface HostArrayOf {
  bf16: Uint16Array;
  fp16: Uint16Array;
  u8: Uint8Array;
  fp8_e4m3: Uint8Array;
  fp8_e5m2: Uint8Array;
  i32: Int32Array;
  i64: BigInt64Array;
}

/** A host array of any supported dtype. */
export type HostArray = HostArrayOf[DType];

/** A constructor of the host array for dtype `D`. */
export interface HostArrayConstructor<D extends DType> {
  new (length: number): HostArrayOf[D];
  readonly BYTES_PER_ELEMENT: number;
  readonly name: string;
}

/** What mla-kv needs to know about one dtype. */
export interface DTypeInfo<D extends DType = DType> {
  readonly name: D;
  /** Bytes per element. */
  readonly bytes: 1 | 2 | 4 | 8;
  /** The host array type that holds this dtype's bits. */
  readonly HostArray: HostArrayConstructor<D>;
}

/** Every dtype with its size and host array. */
export const DTYPES: { readonly [D in DType]: DTypeInfo<D> } = {
  bf16: { name: "bf16", bytes: 2, HostArray: Uint16Array },
  fp16: { name: "fp16", bytes: 2, HostArray: Uint16Array },
  u8: { name: "u8", bytes: 1, HostArray: Uint8Array },
  fp8_e4m3: { name: "fp8_e4m3", bytes: 1, HostArray: Uint8Array },
  fp8_e5m2: { name: "fp8_e5m2", bytes: 1, HostArray: Uint8Array },
  i32: { name: "i32", bytes: 4, HostArray: Int32Array },
  i64: { name: "i64", bytes: 8, HostArray: BigInt64Array },
};

/** The dtypes a KV cache row (and so kNope and kRope) may have. */
export const ROW_DTYPES: readonly DType[] = ["bf16", "fp16", "u8", "fp8_e4m3", "fp8_e5m2"];

/** The dtypes of `loc`. */
export const LOC_DTYPES: readonly DType[] = ["i32", "i64"];

/** True when `value` names a dtype. */
export function isDType(value: unknown): value is DType {
  return typeof value === "string" && Object.hasOwn(DTYPES, value);
}

/** Bytes per element of `dtype`. */
export function dtypeBytes(dtype: DType): number {
  return DTYPES[dtype].bytes;
}
