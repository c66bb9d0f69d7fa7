/**
 * The same mod.ts under Deno (`bun run test:deno`, which is `deno test --no-check --allow-ffi
 * --allow-read --allow-env --allow-write --allow-sys --allow-run tests/deno/smoke.deno.ts`;
 * --no-check because this file is not part of the type-checked tree; `deno check mod.ts` checks
 * the package): the library loads through the Deno adapter, bad input is refused before the FFI
 * with the same errors, a missing permission is named, and on a GPU a real write is byte-exact.
 * Bun's test runner skips this file (it is not *.test.ts); CI runs it with Deno from the npm
 * registry.
 */
import {
  allocTensor,
  deviceCount,
  fromHost,
  libraryInfo,
  MlaKvError,
  setMlaKvBuffer,
  Stream,
  wrapDevicePointer,
} from "../../mod.ts";
import { MLA_KV_ABI_VERSION as EXPECTED_ABI_VERSION } from "../../ffi/abi.ts";

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

function gpuCount(): number {
  try {
    return deviceCount();
  } catch (error) {
    assert(error instanceof MlaKvError && error.code === "NO_DEVICE", `expected NO_DEVICE, got ${error}`);
    return 0;
  }
}

const EXAMPLE = new URL("../../examples/write_rows.ts", import.meta.url).pathname;
const FLAGS = ["--allow-ffi", "--allow-read", "--allow-env", "--allow-write", "--allow-sys"];

/** Runs the README's example under Deno with `flags`; its exit status and output. */
async function runExample(flags: string[]): Promise<{ code: number; text: string }> {
  const out = await new Deno.Command(Deno.execPath(), { args: ["run", "--no-check", ...flags, EXAMPLE], stdout: "piped", stderr: "piped" }).output();
  return { code: out.code, text: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr) };
}

Deno.test("loads libmla_kv through Deno.dlopen, checks its ABI version and says why it chose it", () => {
  const info = libraryInfo();
  assert(info.abiVersion === EXPECTED_ABI_VERSION, `ABI ${info.abiVersion} != ${EXPECTED_ABI_VERSION}`);
  assert(info.buildId.length > 0, "empty build id");
  assert(/built from this package's CUDA sources|MLA_KV_LIBRARY is set/.test(info.reason), `reason: ${info.reason}`);
});

Deno.test("refuses a kRope whose dtype differs from the cache's, naming it, before anything reaches the GPU", () => {
  const cache = wrapDevicePointer({ ptr: 0x10000, dtype: "bf16", shape: [64, 576] });
  const loc = wrapDevicePointer({ ptr: 0x20000, dtype: "i64", shape: [2] });
  const kNope = wrapDevicePointer({ ptr: 0x30000, dtype: "bf16", shape: [2, 512] });
  const kRope = wrapDevicePointer({ ptr: 0x40000, dtype: "fp16", shape: [2, 64] });
  try {
    setMlaKvBuffer(cache, loc, kNope, kRope);
    throw new Error("nothing was thrown");
  } catch (error) {
    assert(error instanceof MlaKvError, `not an MlaKvError: ${error}`);
    assert(error.code === "INVALID_ARGUMENT" && error.argument === "kRope", `${error.code} ${error.argument}`);
  }
});

Deno.test("answers deviceCount with NO_DEVICE without a GPU, or with the GPUs there are", () => {
  assert(gpuCount() >= 0, "negative count");
});

Deno.test({
  name: "writes rows byte for byte on the GPU",
  ignore: gpuCount() === 0,
  fn() {
    const n = 300, capacity = 1000;
    const nope = new Uint16Array(n * 512).map((_, i) => (i * 2654435761) >>> 16 | 1);
    const rope = new Uint16Array(n * 64).map((_, i) => (i * 40503) & 0xffff | 1);
    const slots = Array.from({ length: capacity }, (_, i) => i).sort((a, b) => ((a * 7919) % capacity) - ((b * 7919) % capacity)).slice(0, n);
    const stream = Stream.create(0);
    const cache = allocTensor("bf16", [capacity, 576]);
    const want = new Uint16Array(capacity * 576).fill(0xa5a5);
    cache.upload(want, { stream });
    const kNope = fromHost(nope, "bf16", [n, 512], { stream });
    const kRope = fromHost(rope, "bf16", [n, 64], { stream });
    const loc = fromHost(Int32Array.from(slots), "i32", [n], { stream });
    setMlaKvBuffer(cache, loc, kNope, kRope, { stream });
    stream.synchronize();
    slots.forEach((slot, i) => {
      want.set(nope.subarray(i * 512, (i + 1) * 512), slot * 576);
      want.set(rope.subarray(i * 64, (i + 1) * 64), slot * 576 + 512);
    });
    const got = cache.download({ stream });
    for (const t of [cache, kNope, kRope, loc]) t.free();
    stream.destroy();
    const bad = got.findIndex((v, i) => v !== want[i]);
    assert(bad === -1, `first difference at element ${bad}`);
  },
});

Deno.test("runs the README's example under Deno: verified bytes on a GPU, exit 3 and one clear sentence without", async () => {
  const { code, text } = await runExample(FLAGS);
  if (gpuCount() > 0) {
    assert(code === 0 && text.includes("example: verified all"), `example failed (exit ${code}):\n${text}`);
  } else {
    assert(code === 3 && text.includes("example: no usable NVIDIA GPU here: "), `unexpected (exit ${code}):\n${text}`);
    assert(!text.includes("    at "), `a stack trace leaked:\n${text}`);
  }
});

for (const missing of ["--allow-ffi", "--allow-read", "--allow-env"]) {
  Deno.test(`names ${missing} when the example runs without it, exits 1 and never says to build`, async () => {
    const { code, text } = await runExample(FLAGS.filter((f) => f !== missing));
    assert(code === 1, `exit ${code}:\n${text}`);
    assert(text.includes(`example: cannot start: PERMISSION: Deno denied mla-kv a permission it needs: run deno with ${missing}`), text);
    assert(!text.includes("bun run build"), `says to build:\n${text}`);
  });
}
