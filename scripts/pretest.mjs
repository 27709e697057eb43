#!/usr/bin/env node
// `npm test` runs this first (npm's pretest script). It checks that the programs the suites start are on
// PATH: redis-server (the Redis registry tests start their own servers), ip from iproute2 (the
// network-namespace multicast test) and mount (the full-disk test mounts a tmpfs). Missing ones are
// installed with apt-get when this runs as root; otherwise it stops at once with the command to run. It
// never lets a suite skip for want of them.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Program on PATH -> the Debian package that provides it, and the suites that start it. */
const NEEDED = [
  { bin: 'redis-server', pkg: 'redis-server', for: 'the Redis registry tests' },
  { bin: 'ip', pkg: 'iproute2', for: 'the network-namespace multicast test' },
  { bin: 'mount', pkg: 'mount', for: 'the full-disk test (it mounts a small tmpfs)' },
];

function onPath(bin) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, bin), constants.X_OK);
      return true;
    } catch {
      /* not in this directory */
    }
  }
  return false;
}

function fail(msg) {
  process.stderr.write(`pretest: ${msg}\n`);
  process.exit(1);
}

const missing = NEEDED.filter((n) => !onPath(n.bin));
if (missing.length === 0) process.exit(0);

const pkgs = missing.map((n) => n.pkg);
const what = missing.map((n) => `${n.bin} (package ${n.pkg}, for ${n.for})`).join(', ');
const command = `sudo apt-get update && sudo apt-get install -y ${pkgs.join(' ')}`;
if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
  fail(`missing ${what}. Install with:\n  ${command}\nthen run npm test again.`);
}
if (!onPath('apt-get')) fail(`missing ${what}, and apt-get is not on PATH to install them; install ${pkgs.join(', ')} with this system's package manager.`);

process.stderr.write(`pretest: installing ${pkgs.join(' ')} (missing ${missing.map((n) => n.bin).join(', ')})\n`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
for (const args of [['update', '-qq'], ['install', '-y', '-qq', '--no-install-recommends', ...pkgs]]) {
  const r = spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env });
  if (r.status !== 0) fail(`apt-get ${args[0]} failed (exit ${r.status ?? r.signal}); run as root:\n  apt-get update && apt-get install -y ${pkgs.join(' ')}`);
}
// The packaged service is not ours to run: each test starts its own server on a free loopback port.
if (pkgs.includes('redis-server') && onPath('systemctl')) spawnSync('systemctl', ['stop', 'redis-server'], { stdio: 'ignore' });
const still = missing.filter((n) => !onPath(n.bin));
if (still.length > 0) fail(`apt-get installed ${pkgs.join(' ')} but ${still.map((n) => n.bin).join(', ')} is still not on PATH (${process.env.PATH})`);
process.stderr.write(`pretest: installed ${pkgs.join(' ')}\n`);
