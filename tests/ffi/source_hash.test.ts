import { describe, expect, it } from "bun:test";
import { cpSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../../ffi/find_library.ts";
import { codeOnly, cudaSourceHash } from "../../ffi/source_hash.ts";
import { describeChild, runInChild } from "../helpers/run_in_child.ts";
import { tempDirs } from "../helpers/temp_dirs.ts";

const freshDir = tempDirs("mla-kv-source-hash-");

describe("codeOnly", () => {
  it("drops line and block comments and the blank space between punctuation", () => {
    expect(codeOnly("int  a = 1; // one\n/* two\n lines */ int b = a  +  2;\n")).toBe("int a=1;int b=a+2;");
  });

  it("keeps one space between two words and between two operator characters", () => {
    expect(codeOnly("return x;\nunsigned   long long y = - -x;")).toBe("return x;unsigned long long y= - -x;");
  });

  it("keeps string and character literals as they are, comment markers inside them included", () => {
    expect(codeOnly(`const char* s = "a // b /* c */  d"; char q = '"'; char e = '\\''; // gone`)).toBe(
      `const char*s="a // b /* c */  d";char q='"';char e='\\'';`,
    );
    expect(codeOnly(`printf("it's %d\\n",  1); // the caller's`)).toBe(`printf("it's %d\\n",1);`);
  });

  it("keeps raw strings whole, whatever they contain", () => {
    expect(codeOnly(`auto r = R"x(a " // b )" */ )x";  // c`)).toBe(`auto r=R"x(a " // b )" */ )x";`);
    expect(codeOnly(`auto u = u8R"(  /* kept */  )";`)).toBe(`auto u=u8R"(  /* kept */  )";`);
  });

  it("reads digit separators as part of a number, not as character literals", () => {
    expect(codeOnly("int n = 1'000'000; // it's a number\nint m = 2;")).toBe("int n=1'000'000;int m=2;");
  });

  it("keeps each directive on its own line with its blanks collapsed, so a function-like macro stays one", () => {
    expect(codeOnly("int a;\n  #define F (x)   // object-like\n#define G(x) x\nint b;")).toBe("int a;\n#define F (x)\n#define G(x) x\nint b;");
    expect(codeOnly("#define F (x)")).not.toBe(codeOnly("#define F(x)"));
  });

  it("joins backslash-continued lines first, in directives and comments alike", () => {
    expect(codeOnly("#define TWO \\\n  2\nint a = TWO; // a comment \\\n still the comment\nint b;")).toBe(
      "#define TWO 2\nint a=TWO;int b;",
    );
  });

  it("tells apart code that differs only where blank space separates tokens", () => {
    expect(codeOnly("int x;")).not.toBe(codeOnly("intx;"));
    expect(codeOnly("a - -b")).not.toBe(codeOnly("a--b"));
  });
});

describe("cudaSourceHash", () => {
  const copyOfCuda = () => {
    const dir = join(freshDir(), "cuda");
    cpSync(join(PACKAGE_ROOT, "cuda"), dir, { recursive: true });
    return dir;
  };
  const edit = (file: string, change: (text: string) => string) => writeFileSync(file, change(readFileSync(file, "utf8")));

  it("stays the same when only comments and indentation change", () => {
    const dir = copyOfCuda();
    const before = cudaSourceHash(dir);
    edit(join(dir, "common.cuh"), (t) => `// a new first line\n${t.replaceAll("\n  ", "\n      ")}\n/* and a last one */\n`);
    edit(join(dir, "include", "mla_kv.h"), (t) => t.replace("#define MLA_KV_ABI_VERSION", "/* reworded */ #define MLA_KV_ABI_VERSION"));
    expect(cudaSourceHash(dir)).toBe(before);
  });

  it("changes when code changes, inside a string literal too", () => {
    const dir = copyOfCuda();
    const before = cudaSourceHash(dir);
    edit(join(dir, "capi.cu"), (t) => t.replace('"dev"', '"dev2"'));
    const afterString = cudaSourceHash(dir);
    expect(afterString).not.toBe(before);
    edit(join(dir, "common.cuh"), (t) => t.replace("kMaxThreadsPerBlock = 512", "kMaxThreadsPerBlock = 256"));
    expect(cudaSourceHash(dir)).not.toBe(afterString);
  });

  it("is 12 hex digits for the package's cuda/ folder and null for a missing one", () => {
    expect(cudaSourceHash(join(PACKAGE_ROOT, "cuda"))).toMatch(/^[0-9a-f]{12}$/);
    expect(cudaSourceHash(join(PACKAGE_ROOT, "no-such-folder"))).toBeNull();
  });

  const built = join(PACKAGE_ROOT, "build", "libmla_kv.so");
  it.skipIf(!existsSync(built))(`matches the build id of the library \`bun run build\` made${existsSync(built) ? "" : " (skipped: not built)"}`, () => {
    const result = runInChild(`return m.libraryInfo().buildId;`, {});
    expect(String(result.value), describeChild(result)).toStartWith(`${cudaSourceHash(join(PACKAGE_ROOT, "cuda"))}-`);
  });
});
