/** The `ringcast` command: one table of commands, the help built from it, and the dispatch. */
import { hasName, suggest } from '@ringcast/ring-paxos';
import { BENCHES, runBenchCommand } from './bench.js';
import { runDemo } from './demo.js';
import { runFaultProxy } from './fault-proxy.js';
import { runRegistry } from './registry.js';
import { runCheckpoint, runKvCommand, runKvLoadCommand, runReplica } from './replica.js';
import { runLearn, runNode, runPropose } from './ring.js';
import { runSim } from './sim.js';

interface Command {
  /** What the help shows left of the summary (the name and its main arguments). */
  usage: string;
  summary: string;
  run: (args: string[]) => Promise<number>;
}

/** Every command, in the order the help lists them. */
export const COMMANDS: Readonly<Record<string, Command>> = {
  demo: { usage: 'demo', summary: 'the main job: local rings, two P-SMR replicas and a key-value load (live rate)', run: runDemo },
  replica: { usage: 'replica --cluster F', summary: 'run a P-SMR replica (server proxy with worker threads) of the kv service', run: runReplica },
  checkpoint: { usage: 'checkpoint --cluster F --from URL --out FILE', summary: "save a live replica's checkpoint (for replica --from-replica)", run: runCheckpoint },
  'kv-load': { usage: 'kv-load --cluster F', summary: 'run a key-value command load against the replicas; print a JSON summary', run: runKvLoadCommand },
  kv: { usage: 'kv --cluster F OP ARGS', summary: 'one key-value command (get, put, delete, cas, mget, mput, scan, size)', run: runKvCommand },
  node: { usage: 'node --cluster F --id N', summary: 'run the acceptor (and coordinator) roles of node N from cluster file F', run: runNode },
  learn: { usage: 'learn --cluster F', summary: 'join ring as a learner; print delivered values as JSON lines', run: runLearn },
  propose: { usage: 'propose --cluster F', summary: 'propose --count values and print a JSON summary', run: runPropose },
  bench: { usage: 'bench NAME', summary: 'a benchmark (the help lists one line per benchmark)', run: runBenchCommand },
  sim: { usage: 'sim --seed N', summary: 'replay one simulator seed (or --seeds A..B for a soak)', run: runSim },
  'fault-proxy': { usage: 'fault-proxy --listen H:P --to H:Q', summary: 'UDP relay that drops, duplicates and delays datagrams (tests)', run: runFaultProxy },
  registry: { usage: 'registry load|show --redis URL', summary: 'write a cluster file to the Redis registry, or print its live view', run: runRegistry },
};

function row(left: string, right: string): string {
  return `  ${left.padEnd(26)}${left.length >= 26 ? '  ' : ''}${right}\n`;
}

export const USAGE = `ringcast — Multi-Ring Paxos atomic multicast and P-SMR for Node.js

Usage: ringcast <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => (name === 'bench' ? BENCHES.map((b) => row(`bench ${b.name}`, b.summary)).join('') : row(c.usage, c.summary)))
  .join('')}
Run 'ringcast <command> --help' for the options of a command ('ringcast bench <name> --help' for a benchmark).
`;

/** Run `ringcast ARGV`; resolves with the exit code (2 for an unknown command, naming it). */
export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    process.stdout.write(USAGE);
    return cmd === undefined ? 2 : 0;
  }
  if (!hasName(COMMANDS, cmd)) {
    process.stderr.write(`ringcast: unknown command '${cmd}'; ${suggest(cmd, Object.keys(COMMANDS))}\n\n${USAGE}`);
    return 2;
  }
  return COMMANDS[cmd]!.run(rest);
}
