#!/usr/bin/env bun
/**
 * The package's command, `bunx mla-kv <command>`: one command per file, loaded on demand.
 *   inspect    the library, the GPUs and their profiles (cli/inspect.ts)
 *   autotune   tune this machine's GPUs by hand (cli/autotune.ts)
 */
export {}; // a module, so top-level await is allowed

const [command, ...rest] = process.argv.slice(2);
const usage = "usage: mla-kv <inspect|autotune> [flags]   (mla-kv autotune --help for its flags)";
switch (command) {
  case "inspect":
    process.exitCode = (await import("./inspect.ts")).main(rest);
    break;
  case "autotune":
    process.exitCode = (await import("./autotune.ts")).main(rest);
    break;
  default:
    console.error(command === undefined || command === "--help" ? usage : `mla-kv: unknown command ${JSON.stringify(command)}; ${usage}`);
    process.exitCode = command === "--help" ? 0 : 2;
}
