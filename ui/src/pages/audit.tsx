// The audit log with filters, and whether its hash chain verifies (both admin-only in the API).
import { useState } from 'preact/hooks';
import { api, must } from '../api';
import { Problem, Show, useLoad } from '../components';
import { when } from '../format';
import type { Ctx } from '../main';

interface Filters {
  gun: string;
  actor: string;
  action: string;
  outcome: '' | 'success' | 'denied' | 'failure' | 'pending';
  since: string;
  until: string;
}

const EMPTY: Filters = { gun: '', actor: '', action: '', outcome: '', since: '', until: '' };
const PAGE = 100;
const iso = (local: string) => (local ? new Date(local + 'Z').toISOString() : undefined);

export function AuditPage({ ctx }: { ctx: Ctx }) {
  if (!ctx.can.admin) return <AuditNeedsAdmin />;
  return <Audit />;
}

function AuditNeedsAdmin() {
  return (
    <>
      <h1>Audit</h1>
      <Problem>The audit log needs an admin token.</Problem>
    </>
  );
}

function Audit() {
  const [draft, setDraft] = useState<Filters>(EMPTY);
  const [f, setF] = useState<Filters>(EMPTY);
  // The `before` of each page shown so far: [undefined] is the newest page.
  const [pages, setPages] = useState<Array<number | undefined>>([undefined]);
  const before = pages[pages.length - 1];
  const verify = useLoad(async () => must(await api.GET('/audit/verify')), []);
  const list = useLoad(async () => {
    const query = {
      ...(f.gun ? { gun: f.gun } : {}),
      ...(f.actor ? { actor: f.actor } : {}),
      ...(f.action ? { action: f.action } : {}),
      ...(f.since ? { since: iso(f.since) } : {}),
      ...(f.until ? { until: iso(f.until) } : {}),
      ...(f.outcome ? { outcome: f.outcome } : {}),
      ...(before ? { before } : {}),
      limit: PAGE,
    };
    return must(await api.GET('/audit', { params: { query } }));
  }, [f, before]);
  const field = (k: keyof Filters, label: string, type = 'text') => (
    <>
      <label for={`audit-${k}`}>{label}</label>
      <input
        id={`audit-${k}`}
        type={type}
        value={draft[k]}
        onInput={(e) => setDraft({ ...draft, [k]: (e.target as HTMLInputElement).value })}
      />
    </>
  );
  return (
    <>
      <h1>Audit</h1>
      <Show l={verify}>
        {(v) => (
          <p class={v.ok ? 'chain ok' : 'chain broken'} role="status">
            {v.ok
              ? `Hash chain verified: ${v.entries} entries, head #${v.head.seq}, checked ${when(v.checkedAt)}.`
              : `Hash chain BROKEN at entry #${v.brokenAt}: ${v.reason ?? 'unknown reason'}.`}
          </p>
        )}
      </Show>
      <form
        class="filters grid"
        onSubmit={(e) => {
          e.preventDefault();
          setF(draft);
          setPages([undefined]);
        }}
      >
        {field('gun', 'Repository')}
        {field('actor', 'Actor (token ID or name)')}
        {field('action', 'Action (or prefix)')}
        <label for="audit-outcome">Outcome</label>
        <select
          id="audit-outcome"
          value={draft.outcome}
          onChange={(e) => setDraft({ ...draft, outcome: (e.target as HTMLSelectElement).value as Filters['outcome'] })}
        >
          <option value="">any</option>
          <option>success</option>
          <option>denied</option>
          <option>failure</option>
          <option>pending</option>
        </select>
        {field('since', 'Since (UTC)', 'datetime-local')}
        {field('until', 'Until (UTC)', 'datetime-local')}
        <button type="submit" class="primary">
          Apply filters
        </button>
      </form>
      <Show l={list}>
        {({ entries, nextBefore }) =>
          entries.length === 0 ? (
            <p role="status">No entries match.</p>
          ) : (
            <>
              <div class="scroll">
                <table>
                  <caption class="sr-only">Audit entries, newest first</caption>
                  <thead>
                    <tr>
                      <th scope="col" class="num">
                        #
                      </th>
                      <th scope="col">Time</th>
                      <th scope="col">Actor</th>
                      <th scope="col">Action</th>
                      <th scope="col">Outcome</th>
                      <th scope="col">Repository</th>
                      <th scope="col">Role / key</th>
                    </tr>
                  </thead>
                  <tbody>
                    {[...entries].reverse().map((e) => (
                      <tr key={e.seq} class={`outcome-${e.outcome}`}>
                        <td class="num">{e.seq}</td>
                        <td>{when(e.time)}</td>
                        <td>{e.actor.name}</td>
                        <td>{e.action}</td>
                        <td>{e.outcome}</td>
                        <td>{e.gun ?? '—'}</td>
                        <td>{[e.role, e.keyId?.slice(0, 12)].filter(Boolean).join(' / ') || '—'}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
              <nav class="pager" aria-label="audit pages">
                <button type="button" disabled={pages.length === 1} onClick={() => setPages(pages.slice(0, -1))}>
                  ← Newer
                </button>
                <span>
                  Page {pages.length} ({entries.length} entries, #{entries[entries.length - 1]?.seq} down to #{entries[0]?.seq})
                </span>
                <button type="button" disabled={nextBefore === null} onClick={() => setPages([...pages, nextBefore ?? undefined])}>
                  Older →
                </button>
              </nav>
            </>
          )
        }
      </Show>
    </>
  );
}
