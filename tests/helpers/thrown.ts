/** The MlaKvError that `fn` throws; fails the test if it throws nothing or something else. */
import { MlaKvError } from "../../ffi/errors.ts";

export function thrown(fn: () => unknown): MlaKvError {
  try {
    fn();
  } catch (error) {
    if (error instanceof MlaKvError) return error;
    throw error;
  }
  throw new Error("expected an MlaKvError, but nothing was thrown");
}
