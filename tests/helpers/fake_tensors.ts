/**
 * Tensors over made-up device addresses. Validation and planning read only metadata, so these let
 * every rule be tested without a GPU; nothing here is ever dereferenced.
 */
import type { DType } from "../../src/dtypes.ts";
import { wrapDevicePointer, type DeviceTensor } from "../../src/tensor.ts";

/** A 256-byte aligned address, like cudaMalloc returns; distinct per `slot`. */
export function fakeAddress(slot: number): number {
  return 0x7f00_0000_0000 + slot * 0x1000_0000;
}

let next = 1;

/** A tensor at a fresh fake address. */
export function fake<D extends DType>(
  dtype: D,
  shape: number[],
  extra: { strides?: number[]; device?: number; ptr?: number } = {},
): DeviceTensor<D> {
  return wrapDevicePointer({
    ptr: extra.ptr ?? fakeAddress(next++),
    dtype,
    shape,
    ...(extra.strides ? { strides: extra.strides } : {}),
    ...(extra.device !== undefined ? { device: extra.device } : {}),
  });
}
