// Pending m-of-n changes: what each changes, who has signed, and this token's signature where its keys count.
import { useState } from 'preact/hooks';
import { api, errorText, must, type Schemas } from '../api';
import { Problem, Show, Status, useLoad } from '../components';
import { relative, shortKey, when } from '../format';
import type { Ctx } from '../main';

type Pending = Schemas['Pending'];

/** This token's keys that a part of the change still needs (and that have not signed yet). */
function myKeysThatCount(p: Pending, mine: string[]): string[] {
  const out = new Set<string>();
  for (const part of p.parts)
    for (const req of part.requirements)
      if (req.missing > 0)
        for (const k of req.keyids) if (!req.signedBy.includes(k) && mine.some((m) => k.startsWith(m) || m.startsWith(k))) out.add(k);
  return [...out];
}

function PendingCard({ p, ctx, done }: { p: Pending; ctx: Ctx; done: () => void }) {
  const [msg, setMsg] = useState<{ ok?: string; error?: string }>({});
  const [busy, setBusy] = useState(false);
  const counting = ctx.can.sign(p.gun) ? myKeysThatCount(p, ctx.me.keyIds) : [];
  const sign = async () => {
    setBusy(true);
    setMsg({});
    try {
      let last: Schemas['ChangeResultBase'] | undefined;
      for (const keyId of counting) last = must(await api.POST('/pending/{id}/signatures', { params: { path: { id: p.id } }, body: { keyId } }));
      setMsg({
        ok: last?.status === 'published' ? 'Signed: the change is published.' : `Signed: still waiting for ${last && 'pending' in last ? last.pending.missing : '?'} signature(s).`,
      });
      done();
    } catch (e) {
      setMsg({ error: errorText(e) });
    } finally {
      setBusy(false);
    }
  };
  return (
    <article class="card" aria-labelledby={`p-${p.id}`}>
      <h2 id={`p-${p.id}`}>
        {p.summary} <span class="muted">· {p.gun}</span>
      </h2>
      <p class="muted">
        {p.action} · opened by {p.createdBy.name} {relative(p.createdAt)} · expires {when(p.expiresAt)} · ID <code>{p.id}</code>
      </p>
      {p.parts.map((part) => (
        <section key={part.role} class="part">
          <h3>
            {part.role} → version {part.version}
          </h3>
          <RoleDiff signed={part.signed as Record<string, unknown>} />
          <ul class="reqs">
            {part.requirements.map((r) => (
              <li key={r.label}>
                {r.label}: {r.signedBy.length} of {r.threshold} signed
                {r.signedBy.length > 0 && (
                  <>
                    {' '}
                    (by{' '}
                    {r.signedBy.map((k) => (
                      <code key={k} title={k}>
                        {shortKey(k)}{' '}
                      </code>
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
      {counting.length > 0 ? (
        <button type="button" class="primary" disabled={busy} onClick={sign}>
          Add my signature ({counting.map(shortKey).join(', ')})
        </button>
      ) : (
        <p class="muted">None of this token's keys is needed here.</p>
      )}
      {msg.ok && <Status>{msg.ok}</Status>}
      {msg.error && <Problem>{msg.error}</Problem>}
    </article>
  );
}

/** The new role's targets and delegations, as a reader checks them (the full JSON folds out). */
function RoleDiff({ signed }: { signed: Record<string, unknown> }) {
  const targets = (signed.targets ?? {}) as Record<string, { hashes?: { sha256?: string }; length?: number }>;
  const roles = ((signed.delegations as { roles?: Array<{ name: string; keyids: string[]; threshold: number }> } | undefined)?.roles ?? []) as Array<{
    name: string;
    keyids: string[];
    threshold: number;
  }>;
  return (
    <div class="diff">
      {Object.keys(targets).length > 0 && (
        <ul>
          {Object.entries(targets).map(([name, t]) => (
            <li key={name}>
              tag <strong>{name}</strong> → {t.length ?? '?'} bytes
            </li>
          ))}
        </ul>
      )}
      {roles.length > 0 && (
        <ul>
          {roles.map((r) => (
            <li key={r.name}>
              delegation <strong>{r.name}</strong>: {r.keyids.length} keys, threshold {r.threshold}
            </li>
          ))}
        </ul>
      )}
      <details>
        <summary>New role metadata</summary>
        <pre>{JSON.stringify(signed, null, 2)}</pre>
      </details>
    </div>
  );
}

export function ApprovalsPage({ ctx }: { ctx: Ctx }) {
  const list = useLoad(async () => must(await api.GET('/pending')).pending, []);
  return (
    <>
      <h1>Approvals</h1>
      <Show l={list}>
        {(pending) =>
          pending.length === 0 ? (
            <p role="status">No change is waiting for signatures.</p>
          ) : (
            <>
              <p class="muted">{pending.length} pending change(s)</p>
              {pending.map((p) => (
                <PendingCard key={p.id} p={p} ctx={ctx} done={list.reload} />
              ))}
            </>
          )
        }
      </Show>
    </>
  );
}
