import { describe, expect, it } from "bun:test";
import { readmeDrift, withinRounding } from "../../scripts/check_readme.ts";

const README = [
  "# mla-kv",
  "The package carries the prebuilt fat library (`prebuilt/linux-x64/libmla_kv.so`, 2.8 MB, static",
  "cudart). One tarball (2.3 MB packed) is simpler to mirror.",
  "The library is one fat binary built by nvcc with static cudart and a size-compressed fatbinary",
  "(2.8 MB): SASS for sm_75.",
  "- **Without a GPU** (CI): 739 Bun tests pass (CI prints 747 passed with the Deno suite and the install check).",
].join("\n");

const FACTS = { libraryBytes: 2_831_208, tarballBytes: 2_255_213, bunPass: 739, ciPass: 747 };

describe("withinRounding", () => {
  it("accepts a value within half a unit of the stated figure's last digit", () => {
    expect(withinRounding("2.8", 2.83)).toBe(true);
    expect(withinRounding("2.8", 2.75)).toBe(true);
    expect(withinRounding("2.8", 2.86)).toBe(false);
    expect(withinRounding("3", 2.6)).toBe(true);
    expect(withinRounding("3", 2.4)).toBe(false);
  });
});

describe("readmeDrift", () => {
  it("finds nothing when every figure holds", () => {
    expect(readmeDrift(README, FACTS)).toEqual([]);
  });

  it("names the figure, its line, the measured value and what to write when a size drifted", () => {
    expect(readmeDrift(README, { ...FACTS, libraryBytes: 5_204_000 })).toEqual([
      "README.md:2 says the prebuilt library's size (Install) is 2.8 MB, but it is 5.204 MB (5204000 bytes): write 5.2 MB",
      "README.md:4 says the fat library's size (The C ABI) is 2.8 MB, but it is 5.204 MB (5204000 bytes): write 5.2 MB",
    ]);
    expect(readmeDrift(README, { tarballBytes: 1_300_000 })).toEqual([
      "README.md:3 says the tarball's size (Install) is 2.3 MB, but it is 1.300 MB (1300000 bytes): write 1.3 MB",
    ]);
  });

  it("wants the test counts exactly", () => {
    expect(readmeDrift(README, { bunPass: 740, ciPass: 747 })).toEqual([
      "README.md:6 says the Bun tests CI passes (Reliability) is 739, but it is 740: write 740",
    ]);
  });

  it("fails, rather than passing silently, when the README no longer states a figure", () => {
    const [problem] = readmeDrift(README.replace("One tarball (2.3 MB packed)", "One tarball"), { tarballBytes: 1 });
    expect(problem).toStartWith("README.md no longer states the tarball's size (Install) in the form");
  });

  it("checks only the figures it is given facts for", () => {
    expect(readmeDrift("nothing here", {})).toEqual([]);
  });
});
