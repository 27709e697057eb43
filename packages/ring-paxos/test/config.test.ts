import { describe, expect, it } from 'vitest';
import { ConfigError, editDistance, parseCluster, suggest } from '@ringcast/ring-paxos';

const nodes = [
  { id: 1, host: '127.0.0.1', port: 7001 },
  { id: 2, host: '127.0.0.1', port: 7002 },
  { id: 3, host: '127.0.0.1', port: 7003 },
];

function fieldOf(raw: unknown): string {
  try {
    parseCluster(raw);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).code).toBe('ERR_RINGCAST_CONFIG');
    return (e as ConfigError).field;
  }
  throw new Error('expected a ConfigError');
}

describe('cluster file validation', () => {
  it('accepts a minimal cluster and derives f, the ring and the coordinator', () => {
    const c = parseCluster({ nodes, rings: [{ id: 0, acceptors: [1, 2, 3] }] });
    expect(c.rings[0]!.f).toBe(1);
    expect(c.rings[0]!.ring).toEqual([1, 2]);
  });

  it('names the field of each mistake', () => {
    expect(fieldOf(null)).toBe('(root)');
    expect(fieldOf({ nodes: [], rings: [] })).toBe('nodes');
    expect(fieldOf({ nodes: [{ ...nodes[0], port: 70000 }], rings: [] })).toBe('nodes[0].port');
    expect(fieldOf({ nodes: [nodes[0], { ...nodes[1], id: 1 }], rings: [] })).toBe('nodes[1].id');
    expect(fieldOf({ nodes: [{ ...nodes[0], host: 'example' }], rings: [] })).toBe('nodes[0].host');
    expect(fieldOf({ nodes, rings: [{ id: 0, acceptors: [1, 2] }] })).toBe('rings[0].acceptors');
    expect(fieldOf({ nodes, rings: [{ id: 0, acceptors: [1, 2, 9] }] })).toBe('rings[0].acceptors[2]');
    expect(fieldOf({ nodes, rings: [{ id: 0, acceptors: [1, 2, 3] }, { id: 0, acceptors: [1] }] })).toBe('rings[1].id');
    expect(fieldOf({ nodes, rings: [{ id: 0, acceptors: [1, 2, 3], ring: [1, 9] }] })).toBe('rings[0].ring[1]');
    expect(fieldOf({ nodes, rings: [{ id: 0, acceptors: [1, 2, 3], multicast: { group: '10.0.0.1', port: 9, interface: '127.0.0.1' } }] })).toBe(
      'rings[0].multicast.group',
    );
    expect(fieldOf({ nodes, rings: [{ id: 0, acceptors: [1] }], settings: { window: 0 } })).toBe('settings.window');
    expect(fieldOf({ nodes, rings: [{ id: 0, acceptors: [1] }], settings: { windw: 4 } })).toBe('settings.windw');
    // A lead that could outlast the takeover silence (positions could go back after a takeover).
    expect(fieldOf({ nodes, rings: [{ id: 0, acceptors: [1] }], settings: { lambda: 1000, skipLeadMs: 400 } })).toBe('settings.skipLeadMs');
    expect(fieldOf({ nodes, rings: [{ id: 0, acceptors: [1] }], settings: { lambda: 100, window: 64 } })).toBe('settings.lambda');
    expect(parseCluster({ nodes, rings: [{ id: 0, acceptors: [1] }], settings: { lambda: 20000, skipLeadMs: 25 } }).settings.skipLeadMs).toBe(25);
    expect(fieldOf({ nodes, rings: [{ id: 0, acceptors: [1] }], settings: { maxValueBytes: 60000, maxDatagramBytes: 60000 } })).toBe(
      'settings.maxValueBytes',
    );
    expect(fieldOf({ nodes, rings: [{ id: 0, acceptors: [1] }], settings: { logRetainBytes: -1 } })).toBe('settings.logRetainBytes');
    expect(parseCluster({ nodes, rings: [{ id: 0, acceptors: [1] }], settings: { logRetainBytes: 64 << 20 } }).settings.logRetainBytes).toBe(64 << 20);
    expect(parseCluster({ nodes, rings: [{ id: 0, acceptors: [1] }] }).settings.logRetainBytes).toBe(0);
    expect(fieldOf({ nodes, rings: [{ id: 0, acceptors: [1] }], secret: 'short' })).toBe('secret');
    expect(fieldOf({ nodes, rings: [{ id: 0, acceptors: [1] }], extra: 1 })).toBe('extra');
  });

  it('refuses settings named after Object members, not only unknown plain names', () => {
    const ring = [{ id: 0, acceptors: [1] }];
    for (const k of ['constructor', 'toString', 'valueOf', 'hasOwnProperty', '__proto__', 'isPrototypeOf']) {
      // JSON.parse makes "__proto__" an own key, as a cluster file read from disk has it.
      const raw = JSON.parse(`{"settings": {"${k}": 5}}`) as Record<string, unknown>;
      expect(() => parseCluster({ nodes, rings: ring, ...raw }), k).toThrow(`settings.${k}: unknown setting; known: window, `);
    }
    expect(() => parseCluster({ nodes, rings: ring, settings: { windw: 4 } })).toThrow('settings.windw: unknown setting; did you mean window?');
  });

  it('refuses unknown keys at every level by name, with the closest known key', () => {
    const msg = (raw: unknown): string => {
      try {
        parseCluster(raw);
      } catch (e) {
        return (e as Error).message;
      }
      return 'accepted';
    };
    expect(msg({ nodes, rings: [{ id: 0, acceptor: [1, 2, 3] }] })).toBe('rings[0].acceptor: unknown key; did you mean acceptors?');
    expect(msg({ nodes: [{ ...nodes[0], metricPort: 9100 }], rings: [{ id: 0, acceptors: [1] }] })).toBe('nodes[0].metricPort: unknown key; did you mean metricsPort?');
    expect(msg({ nodes, rings: [{ id: 0, acceptors: [1], multicast: { group: '239.1.1.1', port: 9, interface: '127.0.0.1', ttl: 1 } }] })).toMatch(
      /^rings\[0\]\.multicast\.ttl: unknown key; known: group, port, interface$/,
    );
    expect(msg({ node: nodes, rings: [{ id: 0, acceptors: [1] }] })).toBe('node: unknown key; did you mean nodes?');
    expect(msg(JSON.parse('{"rings": [{"id": 0, "acceptors": [1], "constructor": 1}], "nodes": [{"id": 1, "host": "127.0.0.1", "port": 7001}]}'))).toBe(
      'rings[0].constructor: unknown key; known: id, acceptors, ring, multicast',
    );
  });

  it('groups are own names: a group called constructor is a group, __proto__ is refused', () => {
    const ring = [{ id: 0, acceptors: [1] }];
    const c = parseCluster({ nodes, rings: ring, groups: { constructor: 0 } });
    expect(Object.keys(c.groups)).toEqual(['constructor']);
    expect(parseCluster({ nodes, rings: ring }).groups.constructor).toBeUndefined();
    expect(() => parseCluster({ nodes, rings: ring, groups: JSON.parse('{"__proto__": 0}') })).toThrow('groups.__proto__');
  });

  it('edit distance and suggestions', () => {
    expect(editDistance('acceptor', 'acceptors')).toBe(1);
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('', 'abc')).toBe(3);
    expect(suggest('widnow', ['window', 'lambda'])).toBe('did you mean window?');
    expect(suggest('zzzz', ['window', 'lambda'])).toBe('known: window, lambda');
  });
});
