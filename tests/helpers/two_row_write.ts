/**
 * Code for a child process (runInChild, where `m` is mod.ts) that sets up a write of two bf16
 * 512+64 rows into slots 3 and 9 of a poisoned [16, 576] cache: host rows `nope` and `rope`,
 * tensors `kv`, `kNope`, `kRope` and `loc`, and `wrong(got)`, how many elements of a downloaded
 * cache differ from what the write must leave there.
 */
export const TWO_ROW_WRITE = `
  const n = 2, slots = [3, 9];
  const nope = Uint16Array.from({ length: n * 512 }, (_, i) => (i * 40503 + 7) & 0xffff);
  const rope = Uint16Array.from({ length: n * 64 }, (_, i) => (i * 2654435761 + 3) >>> 16);
  const kv = m.fromHost(new Uint16Array(16 * 576).fill(0xa5a5), "bf16", [16, 576]);
  const kNope = m.fromHost(nope, "bf16", [n, 512]);
  const kRope = m.fromHost(rope, "bf16", [n, 64]);
  const loc = m.fromHost(Int32Array.from(slots), "i32", [n]);
  const want = new Uint16Array(16 * 576).fill(0xa5a5);
  slots.forEach((s, i) => { want.set(nope.subarray(i * 512, i * 512 + 512), s * 576); want.set(rope.subarray(i * 64, i * 64 + 64), s * 576 + 512); });
  const wrong = (got) => got.filter((v, i) => v !== want[i]).length;
`;
