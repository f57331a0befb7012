// One repository: its signed tags, roles and keys (where each is held, when its role expires),
// delegations and signers, and the actions the token may take on them.
import { useState } from 'preact/hooks';
import { useDebounced } from '../components';
import { api, errorText, must, type Schemas } from '../api';
import { ConfirmButton, Pager, Problem, Show, Status, useLoad } from '../components';
import { bytes, relative, shortDigest, shortKey, when } from '../format';
import type { Ctx } from '../main';

const TAG_PAGE = 100;
const LOCATION = { keystore: 'keystore', hsm: 'HSM', offline: 'offline' } as const;
type Change = Schemas['ChangeResultBase'];

/** What a change did, in words, with the pending change to approve when it waits. */
function outcome(r: Change | { status?: string; summary?: string; pending?: { id: string } }): string {
  if (r.status === 'pending' && 'pending' in r && r.pending)
    return `${r.summary ?? 'Change'}: waiting for more signatures (pending change ${r.pending.id}, see Approvals).`;
  return `${r.summary ?? 'Done'}: published.`;
}

function useAction(after: () => void) {
  const [msg, setMsg] = useState<{ ok?: string; error?: string }>({});
  const [version, setVersion] = useState(0);
  const run = async (f: () => Promise<string>) => {
    setMsg({});
    try {
      setMsg({ ok: await f() });
      setVersion((v) => v + 1);
      after();
    } catch (e) {
      setMsg({ error: errorText(e) });
    }
  };
  const view = (
    <>
      {msg.ok && <Status>{msg.ok}</Status>}
      {msg.error && <Problem>{msg.error}</Problem>}
    </>
  );
  return { run, view, version };
}

function KeyCell({ ids, keys }: { ids: string[]; keys: Map<string, Schemas['KeyInfo']> }) {
  return (
    <ul class="keys">
      {ids.map((id) => {
        const k = keys.get(id);
        return (
          <li key={id}>
            <code title={id}>{shortKey(id)}</code>{' '}
            <span class={`held held-${k?.location ?? 'elsewhere'}`}>{k ? LOCATION[k.location] : 'not held here (public key only)'}</span>
          </li>
        );
      })}
    </ul>
  );
}

export function RepositoryPage({ ctx, gun }: { ctx: Ctx; gun: string }) {
  const path = { params: { path: { gun } } };
  const repo = useLoad(async () => {
    const [r, k] = await Promise.all([api.GET('/repositories/{gun}', path), api.GET('/repositories/{gun}/keys', path)]);
    return { repo: must(r), keys: new Map(must(k).keys.map((x) => [x.id, x])) };
  }, [gun]);
  const canSign = ctx.can.sign(gun);
  const admin = ctx.can.admin;
  const act = useAction(repo.reload);
  return (
    <>
      <p class="crumbs">
        <a href="#/repositories">Repositories</a> /
      </p>
      <h1 class="gun">{gun}</h1>
      {act.view}
      <Show l={repo}>
        {({ repo: r, keys }) => (
          <>
            <p class="muted">
              Root key: {r.rootKey === 'offline' ? 'offline (held by its owner)' : 'held by the server'} · {r.signedTags.length} signed tags
              · {r.delegations.length} delegation(s) · {r.signers.length} signer(s)
            </p>
            {canSign && <SignForm gun={gun} roles={['targets', ...r.delegations.map((d) => d.role)]} run={act.run} />}
            <TagList gun={gun} canSign={canSign} run={act.run} version={act.version} />
            <section aria-labelledby="roles-h">
              <h2 id="roles-h">Roles and keys</h2>
              <div class="scroll">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">Role</th>
                      <th scope="col">Keys (where held)</th>
                      <th scope="col" class="num">
                        Threshold
                      </th>
                      <th scope="col" class="num">
                        Version
                      </th>
                      <th scope="col">Expires</th>
                      {admin && <th scope="col">Actions</th>}
                    </tr>
                  </thead>
                  <tbody>
                    {r.roles.map((role) => (
                      <tr key={role.role}>
                        <th scope="row">{role.role}</th>
                        <td>
                          <KeyCell ids={role.keyIds} keys={keys} />
                        </td>
                        <td class="num">{role.threshold}</td>
                        <td class="num">{role.version ?? '—'}</td>
                        <td>
                          {when(role.expires)} <span class="muted">{relative(role.expires)}</span>
                        </td>
                        {admin && (
                          <td>
                            {(role.role !== 'root' || r.rootKey === 'keystore') && (
                              <ConfirmButton
                                label={`Rotate ${role.role} key`}
                                confirm={`Confirm: rotate the ${role.role} key`}
                                onConfirm={() =>
                                  act.run(async () =>
                                    outcome(
                                      must(
                                        await api.POST('/repositories/{gun}/keys/{role}/rotate', {
                                          params: { path: { gun, role: role.role } },
                                          body: {},
                                        }),
                                      ),
                                    ),
                                  )
                                }
                              />
                            )}
                          </td>
                        )}
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </section>
            <section aria-labelledby="deleg-h">
              <h2 id="deleg-h">Delegations</h2>
              {r.delegations.length === 0 ? (
                <p>No delegations.</p>
              ) : (
                <div class="scroll">
                  <table>
                    <thead>
                      <tr>
                        <th scope="col">Role</th>
                        <th scope="col">Paths</th>
                        <th scope="col">Keys</th>
                        <th scope="col" class="num">
                          Threshold
                        </th>
                        <th scope="col">Expires</th>
                      </tr>
                    </thead>
                    <tbody>
                      {r.delegations.map((d) => (
                        <tr key={d.role}>
                          <th scope="row">{d.role}</th>
                          <td>{(d.paths ?? []).map((p) => (p === '' ? '(all)' : p)).join(', ') || '—'}</td>
                          <td>
                            <KeyCell ids={d.keyIds} keys={keys} />
                          </td>
                          <td class="num">{d.threshold}</td>
                          <td>{when(d.expires)}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              )}
            </section>
            <section aria-labelledby="signers-h">
              <h2 id="signers-h">Signers</h2>
              {r.signers.length === 0 ? (
                <p>No signers.</p>
              ) : (
                <div class="scroll">
                  <table>
                    <thead>
                      <tr>
                        <th scope="col">Signer</th>
                        <th scope="col">Role</th>
                        <th scope="col">Keys</th>
                        {admin && <th scope="col">Actions</th>}
                      </tr>
                    </thead>
                    <tbody>
                      {r.signers.map((s) => (
                        <tr key={s.name}>
                          <th scope="row">{s.name}</th>
                          <td>{s.role}</td>
                          <td>
                            <KeyCell ids={s.keyIds} keys={keys} />
                          </td>
                          {admin && (
                            <td>
                              <ConfirmButton
                                danger
                                label={`Remove signer ${s.name}`}
                                confirm={`Confirm: remove ${s.name}`}
                                onConfirm={() =>
                                  act.run(async () =>
                                    outcome(
                                      must(
                                        await api.DELETE('/repositories/{gun}/signers/{name}', { params: { path: { gun, name: s.name } } }),
                                      ),
                                    ),
                                  )
                                }
                              />
                            </td>
                          )}
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              )}
              {admin && <AddSignerForm gun={gun} run={act.run} />}
            </section>
          </>
        )}
      </Show>
    </>
  );
}

function TagList({
  gun,
  canSign,
  run,
  version,
}: {
  gun: string;
  canSign: boolean;
  run: (f: () => Promise<string>) => void;
  version: number;
}) {
  const [q, setQ] = useState('');
  const [page, setPage] = useState(0);
  const query = useDebounced(q.trim(), 250);
  const tags = useLoad(
    async () =>
      must(
        await api.GET('/repositories/{gun}/tags', {
          params: { path: { gun }, query: { ...(query ? { q: query } : {}), offset: page * TAG_PAGE, limit: TAG_PAGE } },
        }),
      ),
    [gun, query, page, version],
  );
  return (
    <section aria-labelledby="tags-h">
      <h2 id="tags-h">Signed tags</h2>
      <div class="filters">
        <label for="tag-search">Filter tags</label>
        <input
          id="tag-search"
          type="search"
          value={q}
          onInput={(e) => {
            setQ((e.target as HTMLInputElement).value);
            setPage(0);
          }}
        />
      </div>
      <Show l={tags}>
        {(l) => (
          <>
            <p class="muted" role="status">
              {l.total.toLocaleString('en')} {query ? 'matching ' : ''}tags
            </p>
            {l.tags.length > 0 && (
              <div class="scroll">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">Tag</th>
                      <th scope="col">Digest</th>
                      <th scope="col" class="num">
                        Size
                      </th>
                      <th scope="col">Role</th>
                      <th scope="col">Signer</th>
                      <th scope="col">Signed</th>
                      {canSign && <th scope="col">Actions</th>}
                    </tr>
                  </thead>
                  <tbody>
                    {l.tags.map((t) => (
                      <tr key={`${t.tag} ${t.digest}`}>
                        <th scope="row">{t.tag}</th>
                        <td>
                          <code title={t.digest}>{shortDigest(t.digest)}…</code>
                        </td>
                        <td class="num">{bytes(t.size)}</td>
                        <td>{t.roles.join(', ')}</td>
                        <td>{t.signers.join(', ') || '—'}</td>
                        <td>
                          {t.signedAt ? (
                            <span title={t.signedAtExact ? 'first stored with this digest' : 'at or before'}>
                              {t.signedAtExact ? '' : '≤ '}
                              {when(t.signedAt)}
                            </span>
                          ) : (
                            '—'
                          )}
                        </td>
                        {canSign && (
                          <td>
                            <ConfirmButton
                              danger
                              label={`Revoke ${t.tag}`}
                              confirm={`Confirm: revoke ${t.tag}`}
                              onConfirm={() =>
                                run(async () =>
                                  outcome(
                                    must(await api.DELETE('/repositories/{gun}/tags/{tag}', { params: { path: { gun, tag: t.tag } } })),
                                  ),
                                )
                              }
                            />
                          </td>
                        )}
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
            <Pager page={page} size={TAG_PAGE} total={l.total} onPage={setPage} label="tags" />
          </>
        )}
      </Show>
    </section>
  );
}

function SignForm({ gun, roles, run }: { gun: string; roles: string[]; run: (f: () => Promise<string>) => void }) {
  const [tag, setTag] = useState('');
  const [digest, setDigest] = useState('');
  const [size, setSize] = useState('');
  const [role, setRole] = useState('targets');
  return (
    <details class="action">
      <summary>Sign a digest</summary>
      <form
        class="grid"
        onSubmit={(e) => {
          e.preventDefault();
          run(async () =>
            outcome(
              must(
                await api.POST('/repositories/{gun}/tags', {
                  params: { path: { gun } },
                  body: { tag: tag.trim(), digest: digest.trim(), size: Number(size), role },
                }),
              ),
            ),
          );
        }}
      >
        <label for="sign-tag">Tag</label>
        <input id="sign-tag" required value={tag} onInput={(e) => setTag((e.target as HTMLInputElement).value)} />
        <label for="sign-digest">Digest</label>
        <input
          id="sign-digest"
          required
          placeholder="sha256:…"
          pattern="sha256:[0-9a-f]{64}"
          value={digest}
          onInput={(e) => setDigest((e.target as HTMLInputElement).value)}
        />
        <label for="sign-size">Size (bytes)</label>
        <input id="sign-size" required type="number" min="1" value={size} onInput={(e) => setSize((e.target as HTMLInputElement).value)} />
        <label for="sign-role">Role</label>
        <select id="sign-role" value={role} onChange={(e) => setRole((e.target as HTMLSelectElement).value)}>
          {roles.map((r) => (
            <option key={r}>{r}</option>
          ))}
        </select>
        <button type="submit" class="primary">
          Sign
        </button>
      </form>
    </details>
  );
}

function AddSignerForm({ gun, run }: { gun: string; run: (f: () => Promise<string>) => void }) {
  const [name, setName] = useState('');
  const [pem, setPem] = useState('');
  return (
    <details class="action">
      <summary>Add a signer</summary>
      <form
        class="grid"
        onSubmit={(e) => {
          e.preventDefault();
          const body = pem.trim() ? { name: name.trim(), publicKeys: [pem.trim()] } : { name: name.trim(), generate: true };
          run(async () => outcome(must(await api.POST('/repositories/{gun}/signers', { params: { path: { gun } }, body }))));
        }}
      >
        <label for="signer-name">Name</label>
        <input
          id="signer-name"
          required
          pattern="[a-z0-9_\-]{1,64}"
          value={name}
          onInput={(e) => setName((e.target as HTMLInputElement).value)}
        />
        <label for="signer-pem">Public key (PEM; empty: the server generates one)</label>
        <textarea id="signer-pem" rows={4} value={pem} onInput={(e) => setPem((e.target as HTMLTextAreaElement).value)} />
        <button type="submit" class="primary">
          Add signer
        </button>
      </form>
    </details>
  );
}
