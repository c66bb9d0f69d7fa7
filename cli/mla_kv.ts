#!/usr/bin/env bun
/**
 * The package's command, `bunx mla-kv <command>`: one command per file, loaded on demand.
 *   inspect    the library, the GPUs and their profiles (cli/inspect.ts)
 *   autotune   tune this machine's GPUs by hand (cli/autotune.ts)
 */
import { PACKAGE_VERSION } from "../ffi/package_root.ts";
import { EXIT } from "./usage.ts";

export const USAGE = `Usage: mla-kv <command> [flags]

Commands:
  inspect    The library in use, this machine's GPUs, the paths they run and their profiles.
  autotune   Tune the KV-cache write on this machine's GPUs and save their profiles.

mla-kv <command> --help shows a command's flags and exit statuses.

Flags:
  -h, --help   Show this help.
  --version    Print the version of mla-kv.

Exit status: ${EXIT.ok} for --help and --version; ${EXIT.usage} for no command or an unknown one; else the command's.
`;

/** Where the command's text goes. */
export interface Output {
  stdout(text: string): void;
  stderr(text: string): void;
}

const processOutput: Output = {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
};

/** Runs `mla-kv argv…`; returns the exit status. */
export async function main(argv: readonly string[], out: Output = processOutput): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "inspect":
      return (await import("./inspect.ts")).main(rest, "mla-kv inspect");
    case "autotune":
      return (await import("./autotune.ts")).main(rest, "mla-kv autotune");
    case "-h":
    case "--help":
      out.stdout(USAGE);
      return EXIT.ok;
    case "--version":
      out.stdout(`${PACKAGE_VERSION}\n`);
      return EXIT.ok;
    case undefined:
      out.stdout(USAGE);
      return EXIT.usage;
    default:
      out.stderr(`mla-kv: unknown command ${JSON.stringify(command)}; mla-kv --help lists the commands.\n`);
      return EXIT.usage;
  }
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));
