// Prometheus metrics in notary-server's naming, so existing dashboards keep working.
import { Registry, Summary, collectDefaultMetrics } from 'prom-client';

export type Operation = 'UpdateTUF' | 'GetRoleByHash' | 'GetRoleByVersion' | 'GetRole' | 'GetKey' | 'RotateKey' | 'DeleteTUF' | 'Changefeed';

export class Metrics {
  readonly registry = new Registry();
  private duration = new Summary({
    name: 'notary_server_http_request_duration_microseconds',
    help: 'The HTTP request latencies in microseconds.',
    labelNames: ['operation'],
    percentiles: [0.5, 0.9, 0.99],
    registers: [this.registry],
  });
  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'trustgate_' });
  }
  observe(op: Operation, startNs: bigint): void {
    this.duration.observe({ operation: op }, Number(process.hrtime.bigint() - startNs) / 1000);
  }
}
