// The IPC messages between the cluster primary and its workers (node:cluster, `advanced`
// serialization). Every type is prefixed, so messages of other modules on the same channel pass by.
import type { MetricsSnapshot } from '../observability/metrics.js';
import type { ChangeEvent } from '../trust/service.js';

/** Worker → primary: listening (and the proxy started, when configured). */
export interface ReadyMessage {
  type: 'trustgate:ready';
  proxy?: { url: string; upstream: string; policy: string };
}

/** Worker → primary: /metrics was asked for; answer with the merge of all workers. */
export interface MetricsRequest {
  type: 'trustgate:metrics?';
  id: number;
}

/** Primary → worker: the answer to MetricsRequest. */
export interface MetricsReply {
  type: 'trustgate:metrics';
  id: number;
  snapshot?: MetricsSnapshot;
  error?: string;
}

/** Primary → worker: send this process's metrics. */
export interface SnapshotRequest {
  type: 'trustgate:snapshot?';
  id: number;
}

/** Worker → primary: the answer to SnapshotRequest. */
export interface SnapshotReply {
  type: 'trustgate:snapshot';
  id: number;
  snapshot: MetricsSnapshot;
}

/** Either way: a repository's trust data changed (the primary passes it on to the other workers). */
export interface TrustChange {
  type: 'trustgate:change';
  gun: string;
  kind: ChangeEvent['kind'];
}

export type ClusterMessage = ReadyMessage | MetricsRequest | MetricsReply | SnapshotRequest | SnapshotReply | TrustChange;

const TYPES = new Set<string>([
  'trustgate:ready',
  'trustgate:metrics?',
  'trustgate:metrics',
  'trustgate:snapshot?',
  'trustgate:snapshot',
  'trustgate:change',
]);

/** The message as one of ours, or undefined. */
export function clusterMessage(m: unknown): ClusterMessage | undefined {
  return typeof m === 'object' && m !== null && TYPES.has((m as { type?: unknown }).type as string) ? (m as ClusterMessage) : undefined;
}
