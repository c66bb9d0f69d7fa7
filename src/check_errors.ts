/**
 * Reports rows that earlier writes skipped because their loc was past the end of the cache.
 *
 * The kernel cannot throw, and checking on every write would force a host sync per decode step,
 * so out-of-range rows are counted on the device and reported here, at points where the caller
 * synchronises anyway (Stream.synchronize, DeviceTensor.download, or an explicit call).
 *
 * @module
 */

import { check, native } from "../ffi/native.ts";
import { MLA_KV_ERR_OUT_OF_RANGE_LOC } from "../ffi/abi.ts";
import { MlaKvError } from "../ffi/errors.ts";
import { validateDevice } from "./validate.ts";

/** The message for `count` skipped rows, the first of which was at row index `firstIndex`. */
export function outOfRangeMessage(count: number, firstIndex: number, device = 0): string {
  return (
    `setMlaKvBuffer skipped ${count} row(s) whose loc was >= the cache capacity ` +
    `(first at row index ${firstIndex}) on device ${device}; those rows were not written`
  );
}

/**
 * Waits for the default stream of `device`, then throws if any write on it since the last check
 * skipped rows whose loc was >= the cache capacity. Reading the count also clears it, so each
 * problem is reported once. Writes on other streams are reported by their own
 * `Stream.synchronize()`.
 *
 * @throws {MlaKvError} `OUT_OF_RANGE_LOC` when rows were skipped; `NO_DEVICE`/`CUDA` from the driver.
 *
 * @example
 * ```ts
 * setMlaKvBuffer(kvBuffer, loc, kNope, kRope);
 * checkErrors(kvBuffer.device); // throws MlaKvError("OUT_OF_RANGE_LOC") if some loc >= capacity
 * ```
 */
export function checkErrors(device = 0): void {
  validateDevice(device, "device");
  checkStreamErrors(device, 0);
}

/**
 * Waits for the stream with the raw handle `stream` (0: the default stream) of `device`, then
 * throws if writes on it skipped rows since its last check. Each stream counts its own rows.
 *
 * @throws {MlaKvError} `OUT_OF_RANGE_LOC` when rows were skipped; `NO_DEVICE`/`CUDA` from the driver.
 */
export function checkStreamErrors(device: number, stream: number): void {
  const count = new BigInt64Array(1);
  const firstIndex = new BigInt64Array(1);
  const status = native().mla_kv_check_errors(device, stream, count, firstIndex);
  if (status === MLA_KV_ERR_OUT_OF_RANGE_LOC) {
    throw new MlaKvError("OUT_OF_RANGE_LOC", outOfRangeMessage(Number(count[0]), Number(firstIndex[0]), device));
  }
  check(status, "mla_kv_check_errors");
}
