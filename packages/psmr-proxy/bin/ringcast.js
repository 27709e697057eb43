#!/usr/bin/env -S node --initial-old-space-size=64
import { main } from '../dist/cli.js';
main(process.argv.slice(2)).then(
  (code) => { if (typeof code === 'number') process.exitCode = code; },
  (err) => {
    process.stderr.write(`ringcast: ${err && err.code ? `[${err.code}] ` : ''}${err && err.message ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
