import { describe, expect, it } from "bun:test";
import { hostLibrary } from "../helpers/host_library.ts";
import { describeChild, runInChild, type ChildResult } from "../helpers/run_in_child.ts";
import { TWO_ROW_WRITE } from "../helpers/two_row_write.ts";

const host = hostLibrary();

/**
 * The two-row write captured in the child into `graph` on `stream`. `mark(name)` puts a line on
 * stderr, so a test can tell which mla_kv_free calls (traced) came before and after it.
 */
const CAPTURED_WRITE = `${TWO_ROW_WRITE}
  const stream = m.Stream.create();
  const graph = stream.capture(() => m.setMlaKvBuffer(kv, loc, kNope, kRope, { stream }));
  const mark = (name) => console.error("@@" + name);
`;

/** The traced mla_kv_free calls between each mark, by the mark that ends the stretch. */
function freesBetweenMarks(result: ChildResult): Record<string, number> {
  const counts: Record<string, number> = {};
  let frees = 0;
  for (const line of result.stderr.split("\n")) {
    if (line.startsWith("mla_kv_free(")) frees++;
    const mark = /^@@(\S+)/.exec(line)?.[1];
    if (mark !== undefined) {
      counts[mark] = frees;
      frees = 0;
    }
  }
  return counts;
}

describe.skipIf(!host)(`graphs and the memory they captured, against the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  const run = (body: string) =>
    runInChild(`${CAPTURED_WRITE}\n${body}`, { MLA_KV_LIBRARY: host!, MLA_KV_TRACE: "1" }, { timeoutMs: 20_000 });

  it("keeps the sources of a captured write alive after their free(), so a replay still writes the right bytes", () => {
    const result = run(`
      kNope.free(); kRope.free(); loc.free();
      mark("freed");
      graph.replay(stream);
      stream.synchronize();
      const bad = wrong(kv.download());
      mark("replayed");
      graph.destroy();
      mark("destroyed");
      kv.free(); stream.destroy();
      return { bad, disposed: [kNope.disposed, kRope.disposed, loc.disposed] };
    `);
    expect(result.value, describeChild(result)).toEqual({ bad: 0, disposed: [true, true, true] });
    // Nothing is freed while the graph lives; its three sources go when it is destroyed.
    expect(freesBetweenMarks(result)).toEqual({ freed: 0, replayed: 0, destroyed: 3 });
  });

  it("keeps a captured cache alive after its free(): a replay then writes memory that is still allocated", () => {
    const result = run(`
      kv.free();
      mark("freed");
      graph.replay(stream);
      graph.replay(stream);
      stream.synchronize();
      mark("replayed");
      graph.destroy();
      mark("destroyed");
      kNope.free(); kRope.free(); loc.free(); stream.destroy();
      return kv.disposed;
    `);
    expect(result.value, describeChild(result)).toBe(true);
    expect(result.signal, describeChild(result)).toBeNull();
    expect(freesBetweenMarks(result)).toEqual({ freed: 0, replayed: 0, destroyed: 1 });
  });

  it("frees at once a tensor whose graph was destroyed before its free()", () => {
    const result = run(`
      graph.replay(stream);
      stream.synchronize();
      const bad = wrong(kv.download());
      graph.destroy();
      mark("destroyed");
      kNope.free();
      mark("freed");
      return bad;
    `);
    expect(result.value, describeChild(result)).toBe(0);
    expect(freesBetweenMarks(result)).toEqual({ destroyed: 0, freed: 1 });
  });

  it("frees a tensor two graphs captured only when the second of them is destroyed", () => {
    const result = run(`
      const second = stream.capture(() => m.setMlaKvBuffer(kv, loc, kNope, kRope, { stream }));
      kv.free();
      mark("freed");
      graph.destroy();
      mark("first");
      second.replay(stream);
      second.destroy();
      mark("second");
      return "done";
    `);
    expect(result.value, describeChild(result)).toBe("done");
    // The sources were not freed by the caller: only the cache goes, with the last graph.
    expect(freesBetweenMarks(result)).toEqual({ freed: 0, first: 0, second: 1 });
  });

  it("lets go of what a capture held when its function throws", () => {
    const result = run(`
      graph.destroy();
      try { stream.capture(() => { m.setMlaKvBuffer(kv, loc, kNope, kRope, { stream }); throw new Error("model bug"); }); } catch {}
      mark("abandoned");
      kv.free();
      mark("freed");
      return "done";
    `);
    expect(result.value, describeChild(result)).toBe("done");
    expect(freesBetweenMarks(result)).toEqual({ abandoned: 0, freed: 1 });
  });
});

describe.skipIf(!host)(`calls refused inside a capture, against the host implementation of the ABI${host ? "" : " (skipped: the C fixture did not build)"}`, () => {
  it("refuses free, allocTensor, fromHost, upload, download, checkErrors and synchronize with CAPTURE, and the capture still ends", () => {
    const result = runInChild(`
      using stream = m.Stream.create();
      using other = m.Stream.create();
      using t = m.allocTensor("u8", [16]);
      const refused = {};
      const attempt = (name, fn) => { try { fn(); refused[name] = "ran"; } catch (e) { refused[name] = e.code + (e.message.includes("being captured") ? "" : ": " + e.message); } };
      const graph = stream.capture(() => {
        attempt("free", () => t.free());
        attempt("allocTensor", () => m.allocTensor("u8", [16]));
        attempt("fromHost", () => m.fromHost(new Uint8Array(16), "u8", [16]));
        attempt("upload", () => t.upload(new Uint8Array(16), { stream }));
        attempt("download", () => t.download({ stream }));
        attempt("checkErrors", () => m.checkErrors());
        attempt("synchronize another stream", () => other.synchronize());
      });
      graph.destroy();
      return { refused, disposed: t.disposed, capturing: stream.isCapturing() };
    `, { MLA_KV_LIBRARY: host! });
    expect(result.value, describeChild(result)).toEqual({
      refused: {
        free: "CAPTURE",
        allocTensor: "CAPTURE",
        fromHost: "CAPTURE",
        upload: "CAPTURE",
        download: "CAPTURE",
        checkErrors: "CAPTURE",
        "synchronize another stream": "CAPTURE",
      },
      disposed: false,
      capturing: false,
    });
  });

  it("still lets a view be disposed inside a capture, as a using declaration there does", () => {
    const result = runInChild(`
      using stream = m.Stream.create();
      using t = m.allocTensor("u8", [16]);
      let disposed;
      stream.capture(() => { const v = t.narrow(0, 0, 8); v.free(); disposed = v.disposed; }).destroy();
      return { view: disposed, owner: t.disposed };
    `, { MLA_KV_LIBRARY: host! });
    expect(result.value, describeChild(result)).toEqual({ view: true, owner: false });
  });
});
