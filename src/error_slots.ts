/**
 * Reading a stream's error slot: the rows that writes on it skipped because their loc was past the
 * end of the cache, counted on the device and cleared when read (C ABI `mla_kv_check_errors`).
 *
 * @module
 */

import { check, native } from "../ffi/native.ts";
import { MLA_KV_ERR_OUT_OF_RANGE_LOC } from "../ffi/abi.ts";
import { MlaKvError } from "../ffi/errors.ts";

/**
 * The message for `count` skipped rows, the first of which was at row index `firstIndex`, counted
 * on the default stream of `device` (or, with `onStream`, on a stream of it).
 */
export function outOfRangeMessage(count: number, firstIndex: number, device = 0, onStream = false): string {
  return (
    `setMlaKvBuffer skipped ${count} row(s) whose loc was >= the cache capacity ` +
    `(first at row index ${firstIndex}) on ${onStream ? "a stream of " : ""}device ${device}; those rows were not written`
  );
}

/**
 * Waits for the stream `handle` of `device` (0: its default stream), then throws
 * `OUT_OF_RANGE_LOC` if writes on it skipped rows since the last check, clearing its slot.
 */
export function checkStreamErrors(device: number, handle: number): void {
  const count = new BigInt64Array(1);
  const firstIndex = new BigInt64Array(1);
  const status = native().mla_kv_check_errors(device, handle, count, firstIndex);
  if (status === MLA_KV_ERR_OUT_OF_RANGE_LOC) {
    throw new MlaKvError("OUT_OF_RANGE_LOC", outOfRangeMessage(Number(count[0]), Number(firstIndex[0]), device, handle !== 0));
  }
  check(status, "mla_kv_check_errors");
}
