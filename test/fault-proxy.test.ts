import { spawn } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { createInterface } from 'node:readline';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '@ringcast/ring-paxos';
import { FaultProxy } from '@ringcast/ring-paxos/testing';
import { RINGCAST_BIN, spawnRingcast, stopProcess, type Spawned } from '@ringcast/cli';
import { stopAll, waitUntil } from './helpers.js';

// `ringcast fault-proxy` as a real process on 127.0.0.1, in front of a UDP echo socket of this test.

const N = 2000;
const payload = (i: number): string => `${i}|${'x'.repeat(i % 50)}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function bound(s: Socket, port = 0): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(port, '127.0.0.1', () => resolve());
  });
  return s.address().port;
}

/** An echo socket: every datagram goes back to its sender; remembers the sender ports it saw. */
async function echoServer(): Promise<{ sock: Socket; port: number; senders: Set<number> }> {
  const sock = createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
  const senders = new Set<number>();
  sock.on('message', (m, r) => {
    senders.add(r.port);
    sock.send(m, r.port, r.address);
  });
  return { sock, port: await bound(sock), senders };
}

/** A client socket that records every datagram it receives (as utf-8). */
async function client(): Promise<{ sock: Socket; got: string[] }> {
  const sock = createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
  const got: string[] = [];
  sock.on('message', (m) => got.push(m.toString('utf8')));
  await bound(sock);
  return { sock, got };
}

/** `ringcast <args>` with stdin as a pipe (spawnRingcast ignores stdin), shaped as a Spawned for stopProcess. */
function spawnWithStdin(args: string[]): Spawned & { write(s: string): void } {
  const child = spawn(process.execPath, [RINGCAST_BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: unknown[] = [];
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  createInterface({ input: child.stdout! }).on('line', (l) => {
    try {
      lines.push(JSON.parse(l));
    } catch {
      /* not JSON */
    }
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const find = (event: string): Record<string, unknown> | undefined =>
    (lines as Array<Record<string, unknown>>).find((l) => l.event === event);
  return {
    child,
    lines,
    exited,
    stderr: () => err,
    write: (s) => child.stdin!.write(s),
    async waitFor(event, timeoutMs = 15000) {
      if (!(await waitUntil(() => find(event) !== undefined || child.exitCode !== null, timeoutMs))) {
        throw new Error(`timed out waiting for '${event}'\n${err}`);
      }
      const v = find(event);
      if (!v) throw new Error(`exited with ${child.exitCode} before '${event}'\n${err}`);
      return v;
    },
  };
}

const sockets: Socket[] = [];
const procs: Spawned[] = [];

afterEach(async () => {
  await stopAll(procs.splice(0));
  for (const s of sockets.splice(0)) s.close();
});
afterAll(async () => {
  await stopAll(procs);
});

async function startProxy(target: number, flags: string[]): Promise<{ proc: Spawned; port: number }> {
  const proc = spawnRingcast(['fault-proxy', '--listen', '127.0.0.1:0', '--to', `127.0.0.1:${target}`, ...flags]);
  procs.push(proc);
  const ready = await proc.waitFor('ready');
  expect(ready.pid).toBe(proc.child.pid);
  return { proc, port: ready.listenPort as number };
}

/** Wait until `got` stops growing for `quietMs` (bounded by `maxMs`). */
async function settle(got: unknown[], quietMs: number, maxMs: number): Promise<void> {
  const end = Date.now() + maxMs;
  let last = -1;
  while (Date.now() < end && got.length !== last) {
    last = got.length;
    await sleep(quietMs);
  }
}

/** Ids of received payloads; fails the test on any payload that was never sent. */
function ids(got: string[]): number[] {
  return got.map((g) => {
    const i = Number(g.split('|')[0]);
    expect(Number.isInteger(i) && i >= 0 && i < N && g === payload(i), `unexpected payload ${JSON.stringify(g)}`).toBe(true);
    return i;
  });
}

describe('ringcast fault-proxy (real process, loopback)', () => {
  it('drops, duplicates and reorders in both directions, and delivers only what was sent', async () => {
    const echo = await echoServer();
    const c = await client();
    sockets.push(echo.sock, c.sock);
    const { proc, port } = await startProxy(echo.port, ['--drop', '0.2', '--dup', '0.1', '--delay', '0-10', '--seed', '7']);

    // Paced: 20 datagrams every 2 ms, so kernel buffers never overflow and only the proxy loses data.
    for (let i = 0; i < N; i++) {
      c.sock.send(payload(i), port, '127.0.0.1');
      if (i % 20 === 19) await sleep(2);
    }
    await settle(c.got, 300, 10_000);

    const got = ids(c.got);
    const distinct = new Set(got);
    // One direction: a datagram survives with 0.8 and is doubled with 0.1. Both directions:
    // E[arrivals] = (0.8 * 1.1)^2 = 0.774 N; E[distinct] = 0.72 * 0.8 + 0.08 * (1 - 0.2^2) = 0.653 N.
    // Bounds are about 8 standard deviations wide (which draw goes to which direction depends on timing).
    expect(got.length / N).toBeGreaterThan(0.65);
    expect(got.length / N).toBeLessThan(0.9);
    expect(distinct.size / N).toBeGreaterThan(0.55);
    expect(distinct.size / N).toBeLessThan(0.75);
    expect(got.length - distinct.size).toBeGreaterThan(50); // duplicates arrived
    let inversions = 0;
    for (let k = 1; k < got.length; k++) if (got[k]! < got[k - 1]!) inversions++;
    expect(inversions).toBeGreaterThan(50); // reordered

    // The proxy's own counters agree: it saw every datagram, dropped about a fifth each way.
    const stats = await waitUntil(() => {
      const s = proc.lines.at(-1) as Record<string, any>;
      return s?.event === 'stats' && s.toTarget.received === N && s.queued === 0;
    }, 5000);
    expect(stats).toBe(true);
    const s = proc.lines.at(-1) as Record<string, any>;
    expect(s.toTarget.dropped / N).toBeGreaterThan(0.14);
    expect(s.toTarget.dropped / N).toBeLessThan(0.26);
    expect(s.toTarget.duplicated).toBeGreaterThan(0);
    expect(s.toTarget.forwarded).toBe(N - s.toTarget.dropped + s.toTarget.duplicated);
    expect(echo.senders.size).toBe(1); // one client, one upstream socket
    expect(s.toClient.received).toBe(s.toTarget.forwarded); // the echo answered every copy
    expect(s.toClient.forwarded).toBe(got.length);
    expect(s.toClient.dropped).toBeGreaterThan(0);
    expect(s.clients).toBe(1);
  });

  it('with every rate 0 delivers everything exactly once and in order', async () => {
    const echo = await echoServer();
    const c = await client();
    sockets.push(echo.sock, c.sock);
    const { proc, port } = await startProxy(echo.port, ['--drop', '0', '--dup', '0', '--delay', '0']);

    // A window of 32 datagrams in flight: nothing can overflow a buffer, and a loss stalls (and fails).
    let sent = 0;
    while (sent < N) {
      while (sent < N && sent - c.got.length < 32) c.sock.send(payload(sent++), port, '127.0.0.1');
      if (!(await waitUntil(() => sent - c.got.length < 32 || c.got.length === N, 5000, 1))) break;
    }
    await settle(c.got, 200, 5000);
    expect(ids(c.got)).toEqual(Array.from({ length: N }, (_, i) => i));
    await stopProcess(proc);
    const stopped = proc.lines.find((l) => (l as Record<string, unknown>).event === 'stopped') as Record<string, any>;
    expect(stopped.toTarget).toMatchObject({ received: N, forwarded: N, dropped: 0, duplicated: 0, delayed: 0, overflow: 0 });
    expect(stopped.toClient).toMatchObject({ received: N, forwarded: N, dropped: 0 });
  });

  it('heals on a "heal" line on stdin', async () => {
    const echo = await echoServer();
    const c = await client();
    sockets.push(echo.sock, c.sock);
    const proc = spawnWithStdin(['fault-proxy', '--listen', '127.0.0.1:0', '--to', `127.0.0.1:${echo.port}`, '--drop', '1']);
    procs.push(proc);
    const port = (await proc.waitFor('ready')).listenPort as number;
    for (let i = 0; i < 20; i++) c.sock.send(payload(i), port, '127.0.0.1');
    await sleep(300);
    expect(c.got).toEqual([]);
    expect(echo.senders.size).toBe(0);

    proc.write('heal\n');
    expect(await proc.waitFor('healed')).toMatchObject({ drop: 0, duplicate: 0, delayMinMs: 0, delayMaxMs: 0 });
    for (let i = 20; i < 40; i++) {
      c.sock.send(payload(i), port, '127.0.0.1');
      expect(await waitUntil(() => c.got.length === i - 19, 5000, 1)).toBe(true);
    }
    expect(ids(c.got)).toEqual(Array.from({ length: 20 }, (_, k) => 20 + k));
    await stopProcess(proc);
    expect(await proc.exited).toBe(0);
  });

  it('gives each client its own upstream socket and closes the least recently used past --max-clients', async () => {
    const echo = await echoServer();
    const cs = await Promise.all([client(), client(), client()]);
    sockets.push(echo.sock, ...cs.map((c) => c.sock));
    const { proc, port } = await startProxy(echo.port, ['--max-clients', '2']);
    const ping = async (k: number, text: string): Promise<void> => {
      const before = cs[k]!.got.length;
      cs[k]!.sock.send(text, port, '127.0.0.1');
      expect(await waitUntil(() => cs[k]!.got.length > before, 5000, 1)).toBe(true);
      expect(cs[k]!.got.at(-1)).toBe(text);
    };
    await ping(0, 'a1');
    await ping(1, 'b1');
    expect(echo.senders.size).toBe(2);
    await ping(0, 'a2'); // client 0 is now the most recently used
    expect(echo.senders.size).toBe(2);
    await ping(2, 'c1'); // evicts client 1
    expect(echo.senders.size).toBe(3);
    await ping(0, 'a3'); // still mapped: same upstream
    expect(echo.senders.size).toBe(3);
    await ping(1, 'b2'); // comes back on a fresh upstream socket
    expect(echo.senders.size).toBe(4);
    expect(cs.map((c) => c.got)).toEqual([['a1', 'a2', 'a3'], ['b1', 'b2'], ['c1']]);
    await stopProcess(proc);
    const stopped = proc.lines.find((l) => (l as Record<string, unknown>).event === 'stopped') as Record<string, any>;
    expect(stopped).toMatchObject({ clients: 2, evicted: 2 });
  });

  it('bounds the delay queue by --max-queue, dropping and counting the rest as overflow', async () => {
    const echo = await echoServer();
    const c = await client();
    sockets.push(echo.sock, c.sock);
    const { proc, port } = await startProxy(echo.port, ['--delay', '400-500', '--max-queue', '10']);
    for (let i = 0; i < 100; i++) c.sock.send(payload(i), port, '127.0.0.1');
    await sleep(100);
    expect(echo.senders.size).toBe(0); // everything held so far
    expect(await waitUntil(() => c.got.length >= 10, 5000)).toBe(true);
    await settle(c.got, 300, 5000);
    // At most 10 copies are held at once; the first 10 each make the round trip (10 held again on the way back).
    expect(new Set(ids(c.got)).size).toBe(c.got.length);
    expect(c.got.length).toBe(10);
    await stopProcess(proc);
    const stopped = proc.lines.find((l) => (l as Record<string, unknown>).event === 'stopped') as Record<string, any>;
    expect(stopped.toTarget).toMatchObject({ received: 100, delayed: 10, overflow: 90, forwarded: 10 });
    expect(stopped.toClient).toMatchObject({ received: 10, delayed: 10, overflow: 0, forwarded: 10 });
  });

  it('refuses bad flags, naming the flag', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--drop', '1.5'], /--drop: must be a number between 0 and 1/],
      [['--dup', 'x'], /--dup: must be a number between 0 and 1/],
      [['--delay', '9-3'], /--delay: /],
      [['--max-queue', '-'], /--max-queue/],
      [['--to', '10.0.0.1:7000'], /--to: must be a loopback address/],
      [['--listen', '0.0.0.0:0'], /--listen: must be a loopback address/],
      [['--to', '127.0.0.1'], /--to: must be HOST:PORT/],
      [['--frobnicate'], /--frobnicate/],
    ];
    const runs = cases.map(([flags]) => {
      const base: Record<string, string> = { '--listen': '127.0.0.1:0', '--to': '127.0.0.1:9' };
      for (let k = 0; k < flags.length; k += 2) if (flags[k]! in base) delete base[flags[k]!];
      const p = spawnRingcast(['fault-proxy', ...Object.entries(base).flat(), ...flags]);
      procs.push(p);
      // 'close' (not 'exit'): stderr has been read to its end.
      return Object.assign(p, { closed: new Promise<number | null>((r) => p.child.once('close', (code) => r(code))) });
    });
    const codes = await Promise.all(runs.map((p) => p.closed));
    cases.forEach(([flags, re], k) => {
      expect(codes[k], flags.join(' ')).toBe(1);
      expect(runs[k]!.stderr()).toMatch(re);
      expect(runs[k]!.lines).toEqual([]);
    });
  });

  it('FaultProxy refuses non-loopback hosts unless allowed, and validates setRates', () => {
    const base = { listenHost: '127.0.0.1', listenPort: 0, targetHost: '127.0.0.1', targetPort: 9 };
    expect(() => new FaultProxy({ ...base, targetHost: '192.168.1.1' })).toThrow(ConfigError);
    expect(() => new FaultProxy({ ...base, listenHost: 'localhost' })).toThrow(/listenHost/);
    expect(() => new FaultProxy({ ...base, targetHost: '192.168.1.1', allowNonLoopback: true })).not.toThrow();
    const p = new FaultProxy({ ...base, drop: 0.5, delayMinMs: 2, delayMaxMs: 4 });
    expect(() => p.setRates({ drop: 1.1 })).toThrow(/drop/);
    expect(() => p.setRates({ delayMinMs: 5 })).toThrow(/delayMinMs/);
    p.setRates({ drop: 0, delayMinMs: 0, delayMaxMs: 0 });
    expect(p.getRates()).toEqual({ drop: 0, duplicate: 0, delayMinMs: 0, delayMaxMs: 0 });
  });
});
