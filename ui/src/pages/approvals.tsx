// Pending m-of-n changes: what each changes (a diff against the role's current file), who has
// signed, and a button that adds this token's signature where its keys count.
import { useState } from 'preact/hooks';
import { api, errorText, must, type Schemas } from '../api';
import { Problem, Show, Status, useLoad } from '../components';
import { bytes, relative, shortDigest, shortKey, when } from '../format';
import type { Ctx } from '../main';

type Pending = Schemas['Pending'];
type PartDiff = Schemas['PartDiff'];

interface Outcome {
  ok?: string;
  error?: string;
}

/** One change; `done` gets what signing did (shown above the list, which reloads without a published change). */
function PendingCard({ p, done }: { p: Pending; done: (o: Outcome) => void }) {
  const [busy, setBusy] = useState(false);
  const mine = p.caller?.canSign ? p.caller.keyIds : [];
  const sign = async () => {
    setBusy(true);
    try {
      let last: Schemas['ChangeResultBase'] | undefined;
      for (const keyId of mine) {
        last = must(await api.POST('/pending/{id}/signatures', { params: { path: { id: p.id } }, body: { keyId } }));
        if (last.status === 'published') break;
      }
      done({
        ok:
          last?.status === 'published'
            ? `Signed ${p.summary} (${p.gun}): it is published.`
            : `Signed ${p.summary} (${p.gun}): still waiting for ${last && 'pending' in last ? last.pending.missing : '?'} more signature(s).`,
      });
    } catch (e) {
      done({ error: errorText(e) });
    } finally {
      setBusy(false);
    }
  };
  const byKey = new Map((p.signedBy ?? []).map((s) => [s.keyId, s.by?.name ?? 'unknown']));
  return (
    <article class="card" aria-labelledby={`p-${p.id}`}>
      <h2 id={`p-${p.id}`}>
        {p.summary} <span class="muted">· {p.gun}</span>
      </h2>
      <p class="muted">
        {p.action} · opened by {p.createdBy.name} {relative(p.createdAt)} · expires {when(p.expiresAt)} · ID <code>{p.id}</code>
      </p>
      {p.parts.map((part) => (
        <section key={part.role} class="part" aria-label={`${part.role} changes`}>
          <h3>
            {part.role}: version {part.diff?.fromVersion ?? '—'} → {part.version}
          </h3>
          {part.diff && <RoleDiff d={part.diff} />}
          <ul class="reqs">
            {part.requirements.map((r) => (
              <li key={r.label}>
                {r.label}: {r.signedBy.length} of {r.threshold} signed
                {r.signedBy.length > 0 && (
                  <>
                    {' '}
                    (
                    {r.signedBy.map((k, i) => (
                      <span key={k}>
                        {i > 0 && ', '}
                        {byKey.get(k) ?? 'unknown'} with <code title={k}>{shortKey(k)}</code>
                      </span>
                    ))}
                    )
                  </>
                )}
                {r.missing > 0 ? <strong> · {r.missing} missing</strong> : ' · complete'}
              </li>
            ))}
          </ul>
        </section>
      ))}
      {mine.length > 0 ? (
        <button type="button" class="primary" disabled={busy} onClick={sign}>
          Add my signature ({mine.map(shortKey).join(', ')})
        </button>
      ) : (
        <p class="muted">None of this token's keys can add a signature here.</p>
      )}
    </article>
  );
}

const target = (t: Schemas['TargetEntry']) => `${shortDigest(t.digest)}… (${bytes(t.size)})`;

/** The part's changes line by line: + added, − removed, ~ changed. */
function RoleDiff({ d }: { d: PartDiff }) {
  const lines: Array<[string, string]> = [];
  for (const t of d.targets.added) lines.push(['add', `+ tag ${t.tag} → ${target(t)}`]);
  for (const t of d.targets.removed) lines.push(['del', `− tag ${t.tag} (was ${target(t)})`]);
  for (const t of d.targets.changed) lines.push(['chg', `~ tag ${t.tag}: ${target(t.from)} → ${target(t.to)}`]);
  for (const r of d.roles) {
    const bits = [
      ...r.keyIdsAdded.map((k) => `+key ${shortKey(k)}`),
      ...r.keyIdsRemoved.map((k) => `−key ${shortKey(k)}`),
      ...(r.threshold ? [`threshold ${r.threshold.from ?? '—'} → ${r.threshold.to ?? '—'}`] : []),
      ...(r.paths ? [`paths ${(r.paths.from ?? []).join(',') || '—'} → ${(r.paths.to ?? []).join(',') || '—'}`] : []),
    ];
    const sign = r.change === 'added' ? '+' : r.change === 'removed' ? '−' : '~';
    lines.push([
      r.change === 'added' ? 'add' : r.change === 'removed' ? 'del' : 'chg',
      `${sign} role ${r.role}: ${bits.join(', ') || r.change}`,
    ]);
  }
  if (when(d.expires.from) !== when(d.expires.to)) lines.push(['chg', `~ expires ${when(d.expires.from)} → ${when(d.expires.to)}`]);
  return (
    <ul class="diff" aria-label={`Changes to ${d.role}`}>
      {lines.length === 0 ? (
        <li>No change to tags or keys (a re-signing).</li>
      ) : (
        lines.map(([k, l], i) => (
          <li key={i} class={k}>
            {l}
          </li>
        ))
      )}
    </ul>
  );
}

export function ApprovalsPage(_: { ctx: Ctx }) {
  const list = useLoad(async () => must(await api.GET('/pending')).pending, []);
  const [msg, setMsg] = useState<Outcome>({});
  const done = (o: Outcome) => {
    setMsg(o);
    list.reload();
  };
  return (
    <>
      <h1>Approvals</h1>
      {msg.ok && <Status>{msg.ok}</Status>}
      {msg.error && <Problem>{msg.error}</Problem>}
      <Show l={list}>
        {(pending) =>
          pending.length === 0 ? (
            <p role="status">No change is waiting for signatures.</p>
          ) : (
            <>
              <p class="muted">{pending.length} pending change(s), waiting for m-of-n signatures</p>
              {pending.map((p) => (
                <PendingCard key={p.id} p={p} done={done} />
              ))}
            </>
          )
        }
      </Show>
    </>
  );
}
