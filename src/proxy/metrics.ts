// Prometheus metrics of the proxy, registered in the app's registry (served at /metrics on the
// trust server's listener).
import { Counter, type Registry } from 'prom-client';

export class ProxyMetrics {
  /** Every pull decision: mode, result (allowed, denied, audit-violation, passed), reason. */
  readonly decisions: Counter<'mode' | 'result' | 'reason'>;
  /** Pulls that audit mode served although they would have been denied. */
  readonly auditViolations: Counter<'repository' | 'reason'>;
  readonly signedPushes: Counter<'result'>;
  readonly upstreamErrors: Counter<'kind'>;
  /** Blob GET bodies by how they were streamed: from the upstream's socket, or through node's client. */
  readonly blobBodies: Counter<'via'>;
  /** Labelled children of `decisions`, so a pull does not hash its labels each time. */
  private decisionChildren = new Map<string, { inc(): void }>();

  constructor(registry: Registry) {
    const existing = <T>(name: string) => registry.getSingleMetric(name) as T | undefined;
    this.decisions =
      existing('trustgate_proxy_pull_decisions_total') ??
      new Counter({
        name: 'trustgate_proxy_pull_decisions_total',
        help: 'Manifest pull decisions of the verifying proxy.',
        labelNames: ['mode', 'result', 'reason'],
        registers: [registry],
      });
    this.auditViolations =
      existing('trustgate_proxy_audit_violations_total') ??
      new Counter({
        name: 'trustgate_proxy_audit_violations_total',
        help: 'Pulls served in audit mode that enforce mode would have denied.',
        labelNames: ['repository', 'reason'],
        registers: [registry],
      });
    this.signedPushes =
      existing('trustgate_proxy_signed_pushes_total') ??
      new Counter({
        name: 'trustgate_proxy_signed_pushes_total',
        help: 'Manifest pushes signed on the way through (result: signed, failed, skipped).',
        labelNames: ['result'],
        registers: [registry],
      });
    this.upstreamErrors =
      existing('trustgate_proxy_upstream_errors_total') ??
      new Counter({
        name: 'trustgate_proxy_upstream_errors_total',
        help: 'Requests the upstream registry could not answer.',
        labelNames: ['kind'],
        registers: [registry],
      });
    this.blobBodies =
      existing('trustgate_proxy_blob_bodies_total') ??
      new Counter({
        name: 'trustgate_proxy_blob_bodies_total',
        help: "Blob GET bodies streamed by the proxy (via: socket = copied from the upstream socket, client = through node's HTTP client).",
        labelNames: ['via'],
        registers: [registry],
      });
  }

  /** Counts one pull decision. */
  decision(mode: string, result: string, reason: string): void {
    const key = `${mode}\0${result}\0${reason}`;
    let child = this.decisionChildren.get(key);
    if (!child) this.decisionChildren.set(key, (child = this.decisions.labels({ mode, result, reason })));
    child.inc();
  }
}
