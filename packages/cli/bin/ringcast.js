#!/usr/bin/env -S node --initial-old-space-size=64
import { main } from '../dist/cli.js';

// A failed command exits with its code at once, even if something it opened is still open (a supervisor
// must see it down, not a process that printed an error and kept its ports). Commands close what they
// opened first; the exit only makes sure nothing forgotten keeps the process alive.
function exit(code) {
  process.exitCode = code;
  if (code !== 0) setTimeout(() => process.exit(code), 200).unref();
}

main(process.argv.slice(2)).then(
  (code) => { if (typeof code === 'number') exit(code); },
  (err) => {
    process.stderr.write(`ringcast: ${err && err.code ? `[${err.code}] ` : ''}${err && err.message ? err.message : String(err)}\n`);
    exit(1);
  },
);
