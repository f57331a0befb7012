// What this instance's verifying proxy refused and why, and how often its verdict cache answered.
import { useState } from 'preact/hooks';
import { api, must } from '../api';
import { Show, useLoad } from '../components';
import { relative, when } from '../format';
import type { Ctx } from '../main';

export function ProxyPage(_: { ctx: Ctx }) {
  const [reason, setReason] = useState('');
  const data = useLoad(
    async () => must(await api.GET('/proxy/denials', { params: { query: { limit: 200, ...(reason ? { reason } : {}) } } })),
    [reason],
  );
  return (
    <>
      <h1>Proxy</h1>
      <Show l={data}>
        {(d) =>
          !d.enabled ? (
            <p role="status">This instance runs no registry proxy (TRUSTGATE_UPSTREAM is not set).</p>
          ) : (
            <>
              <ul class="stats" aria-label="Proxy figures">
                <li>
                  <strong>{d.total.toLocaleString('en')}</strong> refusals since {when(d.since)}
                </li>
                <li>
                  <strong>{d.verdictCache?.hitRate == null ? '—' : `${(d.verdictCache.hitRate * 100).toFixed(1)} %`}</strong> verdict-cache
                  hit rate
                  {d.verdictCache && (
                    <span class="muted">
                      {' '}
                      ({d.verdictCache.hits} hits, {d.verdictCache.misses} misses, {d.verdictCache.kind})
                    </span>
                  )}
                </li>
              </ul>
              <h2>Refusals by reason</h2>
              {Object.keys(d.counts).length === 0 ? (
                <p>No refusals.</p>
              ) : (
                <table class="narrow">
                  <thead>
                    <tr>
                      <th scope="col">Reason</th>
                      <th scope="col" class="num">
                        Count
                      </th>
                    </tr>
                  </thead>
                  <tbody>
                    {Object.entries(d.counts)
                      .sort((a, b) => b[1] - a[1])
                      .map(([r, n]) => (
                        <tr key={r}>
                          <th scope="row">{r}</th>
                          <td class="num">{n}</td>
                        </tr>
                      ))}
                  </tbody>
                </table>
              )}
              <h2>Recent refusals</h2>
              <div class="filters">
                <label for="reason">Reason</label>
                <select id="reason" value={reason} onChange={(e) => setReason((e.target as HTMLSelectElement).value)}>
                  <option value="">every reason</option>
                  {Object.keys(d.counts).map((r) => (
                    <option key={r}>{r}</option>
                  ))}
                </select>
              </div>
              {d.denials.length === 0 ? (
                <p>None kept (the newest {d.capacity} are).</p>
              ) : (
                <div class="scroll">
                  <table>
                    <thead>
                      <tr>
                        <th scope="col">When</th>
                        <th scope="col">Image</th>
                        <th scope="col">Reason</th>
                        <th scope="col">Message</th>
                        <th scope="col">Client</th>
                      </tr>
                    </thead>
                    <tbody>
                      {d.denials.map((x, i) => (
                        <tr key={i}>
                          <td>
                            {when(x.time)} <span class="muted">{relative(x.time)}</span>
                          </td>
                          <td>
                            <a href={`#/repo/${encodeURIComponent(x.gun)}`}>{x.repository}</a>:{x.reference}
                          </td>
                          <td>
                            {x.reason}
                            {x.outcome === 'unavailable' && <span class="muted"> (could not verify)</span>}
                          </td>
                          <td>{x.message}</td>
                          <td>{x.actor}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              )}
            </>
          )
        }
      </Show>
    </>
  );
}
