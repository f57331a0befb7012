// The worker side of cluster mode: /metrics answers for the whole service, trust changes are
// shared with the other workers, and the primary hears when this worker is serving.
import { Metrics } from '../observability/metrics.js';
import type { Logger } from '../observability/log.js';
import type { ChangeEvent, TrustService } from '../trust/service.js';
import { clusterMessage, type ClusterMessage, type MetricsReply, type ReadyMessage } from './messages.js';

/** How long /metrics waits for the primary's merge (the primary itself waits 1 s for the workers). */
const METRICS_TIMEOUT_MS = 3000;

function send(m: ClusterMessage): void {
  // Without a channel the primary is gone, and node's cluster code ends this worker.
  if (!process.connected || !process.send) return;
  try {
    process.send(m);
  } catch {
    // The channel closed between the check and the send: same as above.
  }
}

/** What a worker's app shares with the cluster (app.ts's App has it). */
export interface ClusterApp {
  config: { proxy?: unknown };
  metrics: Pick<Metrics, 'snapshot' | 'collectWith'>;
  log: Logger;
  store: { committedElsewhere?(): void };
  trust: Pick<TrustService, 'events'>;
}

/** Wires a worker's app into the cluster: call once, right after createApp. */
export function joinCluster(app: ClusterApp): void {
  const waiting = new Map<number, { resolve: (m: MetricsReply) => void; timer: NodeJS.Timeout }>();
  let nextId = 0;
  // Events that came from another worker are not sent back out.
  const relayed = new WeakSet<ChangeEvent>();

  process.on('message', (raw: unknown) => {
    const m = clusterMessage(raw);
    if (!m) return;
    if (m.type === 'trustgate:snapshot?') {
      void app.metrics.snapshot().then(
        (snapshot) => send({ type: 'trustgate:snapshot', id: m.id, snapshot }),
        (e: Error) => app.log('warn', "cannot read this worker's metrics", { error: e.message }),
      );
    } else if (m.type === 'trustgate:metrics') {
      const w = waiting.get(m.id);
      if (w) {
        waiting.delete(m.id);
        clearTimeout(w.timer);
        w.resolve(m);
      }
    } else if (m.type === 'trustgate:change' && (m.kind === 'update' || m.kind === 'deletion') && typeof m.gun === 'string') {
      // Another worker changed this repository: drop what this one has cached about it
      // (the proxy's verdicts and verified chain), as if the change had been made here. The
      // store looks again first: a look of this turn may predate the commit (it is reused for up
      // to 1 ms), and a verdict built on it would be cached for its whole TTL.
      app.store.committedElsewhere?.();
      const e: ChangeEvent = { gun: m.gun, kind: m.kind };
      relayed.add(e);
      app.trust.events.emit('change', e);
    }
  });

  // Only the verifying proxy keeps verdicts that a trust change must drop at once; the trust
  // server's own caches check the store on every read. Without the proxy, nothing is relayed.
  if (app.config.proxy) {
    app.trust.events.on('change', (e) => {
      // Every worker hears the store's change feed itself.
      if (!relayed.has(e) && !e.fromFeed) send({ type: 'trustgate:change', gun: e.gun, kind: e.kind });
    });
  }

  app.metrics.collectWith(async () => {
    const id = ++nextId;
    const reply = await new Promise<MetricsReply>((resolve) => {
      const timer = setTimeout(() => {
        waiting.delete(id);
        resolve({ type: 'trustgate:metrics', id, error: `the cluster primary did not answer within ${METRICS_TIMEOUT_MS} ms` });
      }, METRICS_TIMEOUT_MS);
      waiting.set(id, { resolve, timer });
      send({ type: 'trustgate:metrics?', id });
    });
    if (!reply.snapshot) throw new Error(`cluster metrics: ${reply.error ?? 'no answer'}`);
    return Metrics.render(reply.snapshot);
  });
}

/** Tells the primary this worker serves requests (and, when configured, runs the proxy). */
export function reportReady(proxy?: ReadyMessage['proxy']): void {
  send({ type: 'trustgate:ready', ...(proxy ? { proxy } : {}) });
}
