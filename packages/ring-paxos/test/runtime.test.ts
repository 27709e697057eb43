import { createSocket } from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { ipv4Lookup, UdpTransport } from '@ringcast/ring-paxos';

describe('UDP runtime', () => {
  it('answers an IPv4 literal at once and sends a host name through DNS', async () => {
    let literal: string | undefined;
    ipv4Lookup('127.0.0.1', {}, (err, address, family) => {
      expect(err).toBeNull();
      expect(family).toBe(4);
      literal = address;
    });
    expect(literal).toBe('127.0.0.1'); // synchronously: no deferral per datagram
    let named: string | undefined;
    const resolved = new Promise<void>((resolve, reject) =>
      ipv4Lookup('localhost', { family: 4 }, (err, address) => {
        named = address;
        if (err) reject(err);
        else resolve();
      }),
    );
    expect(named).toBeUndefined(); // a host name is resolved asynchronously, by DNS
    await resolved;
    expect(named).toBe('127.0.0.1');
  });

  it('a transport delivers to an IPv4 literal and to a host name', async () => {
    const sink = createSocket('udp4');
    await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
    const got: string[] = [];
    sink.on('message', (m) => got.push(m.toString()));
    const t = await UdpTransport.bind('127.0.0.1', 0, () => {});
    try {
      const port = sink.address().port;
      t.send(Buffer.from('a'), `127.0.0.1:${port}`);
      t.send(Buffer.from('b'), `localhost:${port}`);
      for (let i = 0; i < 100 && got.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
      expect(got.sort()).toEqual(['a', 'b']);
    } finally {
      await t.close();
      sink.close();
    }
  });
});
