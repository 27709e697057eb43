import { ConfigError } from '@ringcast/ring-paxos';
import type { RegistryEvent, RegistryListener } from './types.js';

/** The listeners of a registry. A listener that throws is skipped; it never breaks the registry. */
export class Watchers {
  private readonly listeners = new Set<RegistryListener>();

  get size(): number {
    return this.listeners.size;
  }

  add(l: RegistryListener): () => void {
    if (typeof l !== 'function') throw new ConfigError('listener', 'must be a function');
    // Wrap so the same function may watch twice and each unsubscribe removes only its own entry.
    const entry: RegistryListener = (e) => l(e);
    this.listeners.add(entry);
    return () => void this.listeners.delete(entry);
  }

  emit(e: RegistryEvent): void {
    for (const l of [...this.listeners]) {
      try {
        l(e);
      } catch {
        // A listener's bug is its own; the registry goes on notifying the others.
      }
    }
  }

  clear(): void {
    this.listeners.clear();
  }
}
