// Test helper: a real redis-server child process on a free loopback port, stopped by its PID.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createServer, connect } from 'node:net';
import { delimiter, join } from 'node:path';

/** Fail (never skip) with the command that installs it when redis-server is not on PATH. */
function requireRedisServer(): void {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    try {
      if (dir) return accessSync(join(dir, 'redis-server'), constants.X_OK);
    } catch {
      /* not here */
    }
  }
  throw new Error('redis-server is not on PATH; the Redis registry tests need it: run npm test as root (its pretest installs it) or: sudo apt-get install -y redis-server');
}

/** Ask the kernel for a free TCP port on 127.0.0.1. */
export function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** One PING over a raw socket; resolves true on +PONG within `timeoutMs`. */
function ping(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (ok: boolean): void => {
      clearTimeout(t);
      s.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (b) => {
      buf += b.toString();
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
    s.on('error', () => done(false));
  });
}

export interface RedisServer {
  port: number;
  url: string;
  /** PID of the running server (undefined while stopped). */
  pid(): number | undefined;
  /** Stop the server by its PID (SIGTERM, SIGKILL after 3 s) and wait for it to exit. */
  stop(): Promise<void>;
  /** Start it again on the same port (after stop); resolves once it answers PING. */
  start(): Promise<void>;
}

/** Start `redis-server` on a free loopback port, no persistence; resolves once it answers PING. */
export async function startRedisServer(port?: number): Promise<RedisServer> {
  requireRedisServer();
  const p = port ?? (await freeTcpPort());
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let log = '';

  const start = async (): Promise<void> => {
    if (child) throw new Error('redis-server is already running');
    log = '';
    const c = spawn('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = c;
    const onData = (b: Buffer): void => {
      if (log.length < 16384) log += b.toString();
    };
    c.stdout!.on('data', onData);
    c.stderr!.on('data', onData);
    let gone = false;
    exited = new Promise<void>((r) =>
      c.once('exit', () => {
        gone = true;
        r();
      }),
    );
    c.once('error', (e) => {
      gone = true;
      log += String(e);
    });
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (gone) break;
      if (await ping(p, 200)) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    await stop();
    throw new Error(`redis-server on port ${p} did not answer PING within 10 s\n${log}`);
  };

  const stop = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.pid === undefined || c.exitCode !== null || c.signalCode !== null) return;
    const pid = c.pid;
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return;
    }
    const t = setTimeout(() => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, 3000);
    await exited;
    clearTimeout(t);
  };

  await start();
  return { port: p, url: `redis://127.0.0.1:${p}`, pid: () => child?.pid, stop, start };
}
