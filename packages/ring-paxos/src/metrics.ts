import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { DriverDropReason, DriverHooks, Driver } from './driver.js';
import type { FileLog, RecoveredLog } from './storage/file-log.js';
import { listenError } from './errors.js';

/**
 * Prometheus metrics of one process, on a registry the process owns (never prom-client's global one).
 * Counters the cores keep as plain numbers are read at scrape time; events the driver reports through
 * hooks are counted as they happen.
 */
export class RingMetrics {
  readonly registry = new Registry();
  private readonly drivers: Array<{ ring: string; driver: Driver }> = [];
  readonly dropped: Counter<'reason'>;
  private readonly decided: Counter<'ring'>;
  private readonly decidedBytes: Counter<'ring'>;
  private readonly batchValues: Histogram<'ring'>;
  private readonly batchBytes: Histogram<'ring'>;
  private readonly phase2Latency: Histogram<'ring'>;
  private readonly delivered: Counter<'ring'>;
  private readonly sentBytes: Counter;
  private readonly sentDatagrams: Counter;
  private readonly receivedBytes: Counter;
  private readonly receivedDatagrams: Counter;

  constructor(defaultLabels: Record<string, string> = {}) {
    const registers = [this.registry];
    this.registry.setDefaultLabels(defaultLabels);
    this.dropped = new Counter({
      name: 'ringcast_datagrams_dropped_total',
      help: 'Datagrams dropped before reaching a protocol core, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.decided = new Counter({ name: 'ringcast_instances_decided_total', help: 'Instances decided by this coordinator', labelNames: ['ring'], registers });
    this.decidedBytes = new Counter({ name: 'ringcast_decided_bytes_total', help: 'Value bytes decided by this coordinator', labelNames: ['ring'], registers });
    this.batchValues = new Histogram({
      name: 'ringcast_batch_values',
      help: 'Proposals per decided instance value',
      labelNames: ['ring'],
      buckets: [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 1024],
      registers,
    });
    this.batchBytes = new Histogram({
      name: 'ringcast_batch_bytes',
      help: 'Bytes per decided instance value',
      labelNames: ['ring'],
      buckets: [64, 256, 1024, 4096, 8192, 16384, 32768, 65536],
      registers,
    });
    this.phase2Latency = new Histogram({
      name: 'ringcast_phase2_latency_seconds',
      help: 'Time from the first Phase 2A of an instance to its decision at the coordinator',
      labelNames: ['ring'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
      registers,
    });
    this.delivered = new Counter({ name: 'ringcast_values_delivered_total', help: 'Values delivered by learners in this process', labelNames: ['ring'], registers });
    this.sentBytes = new Counter({ name: 'ringcast_sent_bytes_total', help: 'Datagram bytes sent (each copy counted)', registers });
    this.sentDatagrams = new Counter({ name: 'ringcast_sent_datagrams_total', help: 'Datagrams sent (each copy counted)', registers });
    this.receivedBytes = new Counter({ name: 'ringcast_received_bytes_total', help: 'Datagram bytes received', registers });
    this.receivedDatagrams = new Counter({ name: 'ringcast_received_datagrams_total', help: 'Datagrams received', registers });

    const self = this;
    const each = (name: string, help: string, read: (d: Driver) => number | undefined): void => {
      new Gauge({
        name,
        help,
        labelNames: ['ring'],
        registers,
        collect() {
          this.reset();
          for (const { ring, driver } of self.drivers) {
            const v = read(driver);
            if (v !== undefined) this.set({ ring }, v);
          }
        },
      });
    };
    each('ringcast_window_occupancy', 'Undecided instances open at the coordinator', (d) => d.node.coordinator?.windowOccupancy);
    each('ringcast_window_size', 'Bound of undecided instances at the coordinator', (d) => (d.node.coordinator ? d.node.cfg.settings.window : undefined));
    each('ringcast_learners', 'Learners subscribed to the coordinator', (d) => d.node.coordinator?.learnerCount);
    each('ringcast_learners_left_behind', 'Learners left out of the trim computation: they did not advance while the logs filled (cumulative)', (d) => d.node.coordinator?.stats.learnersLeftBehind);
    each('ringcast_phase2_retransmissions', 'Phase 2A re-sent by the coordinator (cumulative)', (d) => d.node.coordinator?.stats.phase2Retransmits);
    each('ringcast_retransmit_requests', 'Retransmission requests sent by learners (cumulative)', (d) => d.node.learner?.stats.retransmitRequests);
    each('ringcast_retransmitted_instances', 'Decided instances served from the acceptor log (cumulative)', (d) => d.node.acceptor?.stats.retransmittedInstances);
    each('ringcast_acceptor_log_entries', 'Entries held in the acceptor log', (d) => d.node.acceptor?.log.size);
    each('ringcast_acceptor_trimmed_below', 'Acceptor log trimmed below this instance', (d) => d.node.acceptor?.trimmed);
    each('ringcast_acceptor_rejoining', '1 while the acceptor rejoins (no Phase 1 answer, no vote) after losing its log or finding it damaged', (d) =>
      d.node.acceptor ? Number(d.node.acceptor.rejoining) : undefined,
    );
    each('ringcast_learner_next_instance', 'Next instance the learner will deliver', (d) => d.node.learner?.next);
    each('ringcast_duplicates_dropped', 'Duplicate values dropped by the learner (cumulative)', (d) => d.node.learner?.stats.duplicatesDropped);
    each('ringcast_proposer_outstanding', 'Values the proposer has outstanding', (d) => d.node.proposer?.inflight);
    each('ringcast_retention_holds', 'Retention holds in force at the coordinator', (d) => d.node.coordinator?.holds.size);
    each('ringcast_retention_holds_broken', 'Retention holds broken at the coordinator: keeping them would pass logCapacity or logRetainBytes, or they held trimmed instances (cumulative)', (d) => d.node.coordinator?.holds.stats.broken);
    each('ringcast_retention_holds_evicted', 'Retention holds that yielded to a newer holder at maxHolds (cumulative)', (d) => d.node.coordinator?.holds.stats.evicted);
    each('ringcast_retention_holds_refused', 'Retention holds of a new holder refused at maxHolds: maxHolds 0, or every holder renewed since (cumulative)', (d) => d.node.coordinator?.holds.stats.refused);
    each('ringcast_skips', 'Skip instances proposed by this coordinator for rate leveling (cumulative)', (d) => d.node.coordinator?.stats.skips);
    each('ringcast_takeovers', 'Times this node took the coordinator role over from a silent one (cumulative)', (d) => (d.node.acceptor ? d.node.takeovers : undefined));
    each('ringcast_promised_ballot', 'Highest ballot this acceptor promised (changes at every takeover or ring change)', (d) => d.node.acceptor?.promised);
    each('ringcast_proposer_resent', 'Values re-sent by the proposer (cumulative)', (d) => d.node.proposer?.stats.resent);
  }

  /** Hooks that feed this registry from one driver; pass them in DriverOptions. */
  hooksFor(ring: number, extra: DriverHooks = {}): DriverHooks {
    const r = String(ring);
    return {
      ...extra,
      onDrop: (reason: DriverDropReason) => {
        this.dropped.inc({ reason });
        extra.onDrop?.(reason);
      },
      onDecided: (ds) => {
        for (const d of ds) {
          this.batchValues.observe({ ring: r }, d.entries);
          this.batchBytes.observe({ ring: r }, d.bytes);
          this.phase2Latency.observe({ ring: r }, d.latencyMs / 1000);
          this.decidedBytes.inc({ ring: r }, d.bytes);
        }
        this.decided.inc({ ring: r }, ds.length);
        extra.onDecided?.(ds);
      },
      onDeliver: (ds) => {
        this.delivered.inc({ ring: r }, ds.length);
        extra.onDeliver?.(ds);
      },
      onSent: (bytes, copies) => {
        this.sentBytes.inc(bytes * copies);
        this.sentDatagrams.inc(copies);
      },
      onReceived: (bytes) => {
        this.receivedBytes.inc(bytes);
        this.receivedDatagrams.inc();
      },
    };
  }

  private readonly logs: Array<{ ring: string; log: FileLog; recovered: RecoveredLog }> = [];

  /** Export an acceptor log's counters (appends, fsyncs, bytes) and what its recovery found. */
  attachLog(ring: number, log: FileLog, recovered: RecoveredLog): void {
    this.logs.push({ ring: String(ring), log, recovered });
    if (this.logs.length > 1) return;
    const self = this;
    const gauge = (name: string, help: string, read: (l: FileLog, rec: RecoveredLog) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ['ring'],
        registers: [this.registry],
        collect() {
          this.reset();
          for (const { ring, log: l, recovered: rec } of self.logs) this.set({ ring }, read(l, rec));
        },
      });
    };
    gauge('ringcast_log_appends', 'Group commits written to the acceptor log (cumulative)', (l) => l.stats.appends);
    gauge('ringcast_log_bytes', 'Bytes written to the acceptor log (cumulative)', (l) => l.stats.bytes);
    gauge('ringcast_log_syncs', 'fdatasync calls on the acceptor log (cumulative)', (l) => l.stats.syncs);
    gauge('ringcast_log_sync_seconds', 'Time spent in fdatasync (cumulative)', (l) => l.stats.syncMicros / 1e6);
    gauge('ringcast_log_recovery_cut_bytes', 'Bytes of torn tail cut at the last start', (_, rec) => rec.cutBytes);
    gauge('ringcast_log_damaged', '1 if the log was found damaged (lost synced records) at the last start: set aside, the node rejoined', (_, rec) => Number(rec.damage !== undefined));
  }

  attach(ring: number, driver: Driver): void {
    this.drivers.push({ ring: String(ring), driver });
  }

  /** Serve GET /metrics on 127.0.0.1:port (or host); resolves with the bound port; a port in use is a ConfigError naming `field`. */
  async serve(port: number, host = '127.0.0.1', field = 'metricsPort'): Promise<{ port: number; close: () => Promise<void> }> {
    const server: Server = createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end('only /metrics here\n');
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(String(err.message)),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(listenError(e, field, host, port)));
      server.listen(port, host, () => resolve());
    });
    const addr = server.address();
    return {
      port: typeof addr === 'object' && addr ? addr.port : port,
      close: () => new Promise<void>((r) => server.close(() => r())),
    };
  }
}
