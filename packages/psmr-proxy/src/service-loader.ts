import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError, hasName } from '@ringcast/ring-paxos';
import type { Service } from './service.js';
import { btree } from './services/btree.js';
import { kvService } from './services/kv.js';

/** Built-in services by name. */
export const BUILTIN_SERVICES: Record<string, Service<unknown, unknown, unknown>> = {
  kv: kvService as unknown as Service<unknown, unknown, unknown>,
  btree: btree as unknown as Service<unknown, unknown, unknown>,
};

/**
 * A service by name ('kv', 'btree') or module (a path or package name whose default export, or `service`
 * export, is a Service), configured with `params` (the cluster file's `services.<name>`, the same on every
 * replica) when given. Worker threads load it themselves, so it must be importable from any thread, and
 * each is given the same params.
 */
export async function loadService(spec: string, params?: unknown): Promise<Service<unknown, unknown, unknown>> {
  const s = await loadUnconfigured(spec);
  if (params === undefined) return s;
  if (typeof s.configure !== 'function') throw new ConfigError(`services.${s.name}`, `the service '${spec}' takes no parameters`);
  return s.configure(params);
}

async function loadUnconfigured(spec: string): Promise<Service<unknown, unknown, unknown>> {
  if (hasName(BUILTIN_SERVICES, spec)) return BUILTIN_SERVICES[spec]!;
  const target = spec.startsWith('.') || isAbsolute(spec) ? pathToFileURL(resolve(spec)).href : spec;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(target)) as Record<string, unknown>;
  } catch (e) {
    throw new ConfigError('service', `cannot load '${spec}' (built-in: ${Object.keys(BUILTIN_SERVICES).join(', ')}): ${(e as Error).message}`);
  }
  const s = (mod.default ?? mod.service) as Service<unknown, unknown, unknown> | undefined;
  for (const f of ['group', 'kind', 'writeCommand', 'readCommand', 'writeReply', 'readReply', 'createPartition', 'execute', 'digest'] as const) {
    if (typeof s?.[f] !== 'function') throw new ConfigError('service', `'${spec}' does not export a Service (missing ${f}())`);
  }
  return s!;
}
