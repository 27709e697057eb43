/** The registry of modes: adding a mode is adding its file and one line here. */
import { ConfigError } from '@ringcast/ring-paxos';
import type { Mode } from './mode.js';
import { psmr } from './psmr.js';
import { smr } from './smr.js';

export type { Mode, ModeName } from './mode.js';

export const MODES: readonly Mode[] = [smr, psmr];

/** The mode of this name, or a ConfigError on `field` that lists the modes there are. */
export function modeNamed(name: unknown, field = 'mode'): Mode {
  const m = MODES.find((x) => x.name === name);
  if (m === undefined) throw new ConfigError(field, `must be one of ${MODES.map((x) => `'${x.name}'`).join(', ')}, got ${JSON.stringify(name)}`);
  return m;
}
