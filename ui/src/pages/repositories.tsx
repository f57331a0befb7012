// Every repository the token may read, a page at a time from the server: signed tags, roles and
// the soonest expiry, with a search box (the server filters, so 1,000 repositories stay light).
import { useState } from 'preact/hooks';
import { api, must, type Schemas } from '../api';
import { Pager, Show, useDebounced, useLoad } from '../components';
import { relative, when } from '../format';
import type { Ctx } from '../main';

const PAGE = 50;

export function RepositoriesPage(_: { ctx: Ctx }) {
  const [q, setQ] = useState('');
  const [page, setPage] = useState(0);
  const query = useDebounced(q.trim(), 250);
  const list = useLoad(
    async () =>
      must(await api.GET('/repositories', { params: { query: { ...(query ? { q: query } : {}), offset: page * PAGE, limit: PAGE } } })),
    [query, page],
  );
  return (
    <>
      <h1>Repositories</h1>
      <form role="search" class="filters" onSubmit={(e) => e.preventDefault()}>
        <label for="repo-search">Search repositories</label>
        <input
          id="repo-search"
          type="search"
          placeholder="registry.example.com/team/app"
          value={q}
          onInput={(e) => {
            setQ((e.target as HTMLInputElement).value);
            setPage(0);
          }}
        />
      </form>
      <Show l={list}>
        {(l) => (
          <>
            <p class="muted" role="status" id="repo-count">
              {l.total.toLocaleString('en')} {query ? 'matching ' : ''}repositories
            </p>
            {l.total === 0 ? (
              <p>No repository{query ? ' matches' : ' yet'}.</p>
            ) : (
              <div class="scroll">
                <table>
                  <caption class="sr-only">Repositories</caption>
                  <thead>
                    <tr>
                      <th scope="col">Repository (GUN)</th>
                      <th scope="col" class="num">
                        Signed tags
                      </th>
                      <th scope="col">Roles</th>
                      <th scope="col">Soonest expiry</th>
                      <th scope="col">Needs re-signing by</th>
                    </tr>
                  </thead>
                  <tbody>
                    {l.repositories.map((r) => (
                      <tr key={r.gun}>
                        <th scope="row">
                          <a href={`#/repo/${encodeURIComponent(r.gun)}`}>{r.gun}</a>
                        </th>
                        <td class="num">
                          {r.signedTagCount}
                          {r.tagCount !== r.signedTagCount && <span class="muted"> ({r.tagCount} in all roles)</span>}
                        </td>
                        <td>
                          {r.roles.length} <span class="muted">({r.delegationCount} delegations)</span>
                        </td>
                        <td>
                          <Expiry e={r.nextExpiry} />
                        </td>
                        <td>
                          <Expiry e={r.nextManualExpiry} />
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
            <Pager page={page} size={PAGE} total={l.total} onPage={setPage} label="repositories" />
          </>
        )}
      </Show>
    </>
  );
}

function Expiry({ e }: { e: Schemas['RoleExpiry'] }) {
  if (!e) return <>—</>;
  return (
    <>
      {e.role}: {when(e.expires)} <span class="muted">({relative(e.expires)})</span>
    </>
  );
}
