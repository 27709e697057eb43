/** Typed key-value calls over a client proxy of the `kv` service. */
import type { ClusterConfig } from '@ringcast/ring-paxos';
import { createClientProxy, type ClientProxy, type ClientProxyOptions } from './client-proxy.js';
import { kvService, type KvBytes, type KvCommand, type KvReply } from './services/kv.js';

export interface KvClient {
  readonly proxy: ClientProxy<KvCommand, KvReply>;
  get(key: KvBytes): Promise<KvBytes | null>;
  put(key: KvBytes, value: KvBytes): Promise<void>;
  /** True if the key existed. */
  delete(key: KvBytes): Promise<boolean>;
  /** Set `value` if the key holds `expected` (null: absent); true if it did. */
  cas(key: KvBytes, expected: KvBytes | null, value: KvBytes): Promise<boolean>;
  mget(keys: KvBytes[]): Promise<Array<KvBytes | null>>;
  mput(entries: Array<[KvBytes, KvBytes]>): Promise<void>;
  scan(prefix: KvBytes, limit: number): Promise<Array<[KvBytes, KvBytes]>>;
  size(): Promise<number>;
  stop(): Promise<void>;
}

export async function createKvClient(cluster: ClusterConfig, opts: Omit<ClientProxyOptions<KvCommand, KvReply>, 'service'>): Promise<KvClient> {
  const proxy = await createClientProxy<KvCommand, KvReply>(cluster, { ...opts, service: kvService });
  const s = (c: KvCommand): Promise<KvReply> => proxy.submit(c);
  return {
    proxy,
    get: async (key) => ((await s({ op: 'get', key })) as { value: KvBytes | null }).value,
    put: async (key, value) => void (await s({ op: 'put', key, value })),
    delete: async (key) => ((await s({ op: 'delete', key })) as { deleted: boolean }).deleted,
    cas: async (key, expected, value) => ((await s({ op: 'cas', key, expected, value })) as { swapped: boolean }).swapped,
    mget: async (keys) => ((await s({ op: 'mget', keys })) as { values: Array<KvBytes | null> }).values,
    mput: async (entries) => void (await s({ op: 'mput', entries })),
    scan: async (prefix, limit) => ((await s({ op: 'scan', prefix, limit })) as { entries: Array<[KvBytes, KvBytes]> }).entries,
    size: async () => ((await s({ op: 'size' })) as { size: number }).size,
    stop: () => proxy.stop(),
  };
}
