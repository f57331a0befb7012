// Roles that expire within a chosen window, across readable repositories, soonest first.
import { useState } from 'preact/hooks';
import { api, must } from '../api';
import { Pager, Show, useLoad } from '../components';
import { relative, when } from '../format';
import type { Ctx } from '../main';

const WINDOWS: Array<[string, string]> = [
  ['1d', '1 day'],
  ['7d', '7 days'],
  ['30d', '30 days'],
  ['90d', '90 days'],
  ['365d', '1 year'],
  ['3650d', '10 years'],
];

const PAGE = 100;

export function ExpiringPage(_: { ctx: Ctx }) {
  const [within, setWithin] = useState('30d');
  const [manual, setManual] = useState(false);
  const [page, setPage] = useState(0);
  const list = useLoad(
    async () =>
      must(
        await api.GET('/expiring', {
          params: { query: { within, offset: page * PAGE, limit: PAGE, ...(manual ? { manual: 'true' as const } : {}) } },
        }),
      ),
    [within, manual, page],
  );
  return (
    <>
      <h1>Expiring</h1>
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <label for="within">Expiring within</label>
        <select
          id="within"
          value={within}
          onChange={(e) => {
            setWithin((e.target as HTMLSelectElement).value);
            setPage(0);
          }}
        >
          {WINDOWS.map(([v, label]) => (
            <option key={v} value={v}>
              {label}
            </option>
          ))}
        </select>
        <input
          id="manual"
          type="checkbox"
          checked={manual}
          onChange={(e) => {
            setManual((e.target as HTMLInputElement).checked);
            setPage(0);
          }}
        />
        <label for="manual">Only roles someone must re-sign</label>
      </form>
      <Show l={list}>
        {(l) =>
          l.total === 0 ? (
            <p role="status">Nothing expires before {when(l.cutoff)}.</p>
          ) : (
            <>
              <p class="muted" role="status">
                {l.total.toLocaleString('en')} roles expire before {when(l.cutoff)}
              </p>
              <div class="scroll">
                <table>
                  <caption class="sr-only">Roles expiring before {when(l.cutoff)}, soonest first</caption>
                  <thead>
                    <tr>
                      <th scope="col">Expires</th>
                      <th scope="col">Repository</th>
                      <th scope="col">Role</th>
                      <th scope="col" class="num">
                        Version
                      </th>
                      <th scope="col">Renewal</th>
                    </tr>
                  </thead>
                  <tbody>
                    {l.items.map((i) => (
                      <tr key={`${i.gun} ${i.role}`} class={i.expired ? 'expired' : ''}>
                        <td>
                          {when(i.expires)}{' '}
                          <span class="muted">
                            ({i.expired ? 'expired ' : ''}
                            {relative(i.expires)})
                          </span>
                        </td>
                        <td>
                          <a href={`#/repo/${encodeURIComponent(i.gun)}`}>{i.gun}</a>
                        </td>
                        <td>{i.role}</td>
                        <td class="num">{i.version}</td>
                        <td>{i.renewedAutomatically ? 'automatic (server key)' : 'needs a key holder'}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
              <Pager page={page} size={PAGE} total={l.total} onPage={setPage} label="roles" />
            </>
          )
        }
      </Show>
    </>
  );
}
