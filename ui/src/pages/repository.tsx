// One repository: its signed tags, roles and keys (where each is held, when its role expires),
// delegations and signers, and the actions the token may take on them.
import { useState } from 'preact/hooks';
import { api, errorText, must, type Schemas } from '../api';
import { ConfirmButton, Pager, Problem, Show, Status, useLoad } from '../components';
import { bytes, relative, shortDigest, shortKey, when } from '../format';
import type { Ctx } from '../main';

const TAG_PAGE = 100;
type Change = Schemas['ChangeResultBase'];

/** What a change did, in words, with the pending change to approve when it waits. */
function outcome(r: Change | { status?: string; summary?: string; pending?: { id: string } }): string {
  if (r.status === 'pending' && 'pending' in r && r.pending)
    return `${r.summary ?? 'Change'}: waiting for more signatures (pending change ${r.pending.id}, see Approvals).`;
  return `${r.summary ?? 'Done'}: published.`;
}

function useAction(after: () => void) {
  const [msg, setMsg] = useState<{ ok?: string; error?: string }>({});
  const run = async (f: () => Promise<string>) => {
    setMsg({});
    try {
      setMsg({ ok: await f() });
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
  return { run, view };
}

function KeyCell({ ids, keys }: { ids: string[]; keys: Map<string, Schemas['KeyInfo']> }) {
  return (
    <ul class="keys">
      {ids.map((id) => {
        const k = keys.get(id);
        return (
          <li key={id}>
            <code title={id}>{shortKey(id)}</code>{' '}
            <span class={`held held-${k?.held ?? 'elsewhere'}`}>{k ? (k.held === 'offline' ? 'offline' : k.keystore ?? k.held) : 'held elsewhere'}</span>
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
              Root key: {r.rootKey === 'offline' ? 'offline (held by its owner)' : 'in the keystore'} · {r.signedTags.length} signed tags ·{' '}
              {r.delegations.length} delegations
            </p>
            {canSign && <SignForm gun={gun} roles={['targets', ...r.delegations.map((d) => d.role)]} run={act.run} />}
            <TagList gun={gun} tags={r.signedTags} canSign={canSign} run={act.run} />
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
                                    outcome(must(await api.DELETE('/repositories/{gun}/signers/{name}', { params: { path: { gun, name: s.name } } }))),
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
  tags,
  canSign,
  run,
}: {
  gun: string;
  tags: Schemas['SignedTag'][];
  canSign: boolean;
  run: (f: () => Promise<string>) => void;
}) {
  const [q, setQ] = useState('');
  const [page, setPage] = useState(0);
  const needle = q.trim().toLowerCase();
  const hits = needle ? tags.filter((t) => t.tag.toLowerCase().includes(needle) || t.digest.includes(needle)) : tags;
  const shown = hits.slice(page * TAG_PAGE, (page + 1) * TAG_PAGE);
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
      {hits.length === 0 ? (
        <p>No signed tags{needle ? ' match' : ''}.</p>
      ) : (
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
                <th scope="col">Signed by</th>
                {canSign && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {shown.map((t) => (
                <tr key={t.tag}>
                  <th scope="row">{t.tag}</th>
                  <td>
                    <code title={t.digest}>sha256:{shortDigest(t.digest)}…</code>
                  </td>
                  <td class="num">{bytes(t.size)}</td>
                  <td>{t.roles.join(', ')}</td>
                  <td>{t.signers.join(', ') || '—'}</td>
                  {canSign && (
                    <td>
                      <ConfirmButton
                        danger
                        label={`Revoke ${t.tag}`}
                        confirm={`Confirm: revoke ${t.tag}`}
                        onConfirm={() =>
                          run(async () => outcome(must(await api.DELETE('/repositories/{gun}/tags/{tag}', { params: { path: { gun, tag: t.tag } } }))))
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
      <Pager page={page} size={TAG_PAGE} total={hits.length} onPage={setPage} label="tags" />
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
        <input id="signer-name" required pattern="[a-z0-9_\-]{1,64}" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        <label for="signer-pem">Public key (PEM; empty: the server generates one)</label>
        <textarea id="signer-pem" rows={4} value={pem} onInput={(e) => setPem((e.target as HTMLTextAreaElement).value)} />
        <button type="submit" class="primary">
          Add signer
        </button>
      </form>
    </details>
  );
}
