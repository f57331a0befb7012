// Every repository the token may read: signed tags, roles, the soonest expiry; search and pages.
import { useState } from 'preact/hooks';
import { api, must } from '../api';
import { Pager, Show, useLoad } from '../components';
import { relative, when } from '../format';
import type { Ctx } from '../main';

const PAGE = 50;

export function RepositoriesPage(_: { ctx: Ctx }) {
  const [q, setQ] = useState('');
  const [page, setPage] = useState(0);
  const list = useLoad(async () => must(await api.GET('/repositories')).repositories, []);
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
        {(repos) => {
          const needle = q.trim().toLowerCase();
          const hits = needle ? repos.filter((r) => r.gun.toLowerCase().includes(needle)) : repos;
          const shown = hits.slice(page * PAGE, (page + 1) * PAGE);
          return (
            <>
              <p class="muted" role="status">
                {hits.length.toLocaleString('en')} of {repos.length.toLocaleString('en')} repositories
              </p>
              <div class="scroll">
                <table>
                  <caption class="sr-only">Repositories</caption>
                  <thead>
                    <tr>
                      <th scope="col">Repository (GUN)</th>
                      <th scope="col" class="num">
                        Signed tags
                      </th>
                      <th scope="col" class="num">
                        Delegations
                      </th>
                      <th scope="col" class="num">
                        Root / targets version
                      </th>
                      <th scope="col">Soonest expiry</th>
                    </tr>
                  </thead>
                  <tbody>
                    {shown.map((r) => (
                      <tr key={r.gun}>
                        <td>
                          <a href={`#/repo/${encodeURIComponent(r.gun)}`}>{r.gun}</a>
                        </td>
                        <td class="num">{r.tagCount}</td>
                        <td class="num">{r.delegationCount}</td>
                        <td class="num">
                          {r.rootVersion} / {r.targetsVersion ?? '—'}
                        </td>
                        <td>
                          {r.nextExpiry ? (
                            <>
                              {r.nextExpiry.role}: {when(r.nextExpiry.expires)} <span class="muted">({relative(r.nextExpiry.expires)})</span>
                            </>
                          ) : (
                            '—'
                          )}
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
              {hits.length === 0 && <p>No repository matches.</p>}
              <Pager page={page} size={PAGE} total={hits.length} onPage={setPage} label="repositories" />
            </>
          );
        }}
      </Show>
    </>
  );
}
