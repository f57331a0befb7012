// The dashboard's shell: sign-in, navigation and hash routes (#/repositories, #/repo/<gun>, ...),
// so the server needs to know no client route.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, errorText, must, session, whenUnauthorized } from './api';
import { abilities, type Abilities, type WhoAmI } from './scopes';
import { Problem } from './components';
import { RepositoriesPage } from './pages/repositories';
import { RepositoryPage } from './pages/repository';
import { ApprovalsPage } from './pages/approvals';
import { ExpiringPage } from './pages/expiring';
import { AuditPage } from './pages/audit';
import { ProxyPage } from './pages/proxy';
import './style.css';

export interface Ctx {
  me: WhoAmI;
  can: Abilities;
}

const NAV: Array<[string, string]> = [
  ['#/repositories', 'Repositories'],
  ['#/approvals', 'Approvals'],
  ['#/expiring', 'Expiring'],
  ['#/audit', 'Audit'],
  ['#/proxy', 'Proxy'],
];

function useHash(): string {
  const [hash, setHash] = useState(location.hash || '#/repositories');
  useEffect(() => {
    const on = () => setHash(location.hash || '#/repositories');
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return hash;
}

function SignIn({ onSignedIn, notice }: { onSignedIn: (me: WhoAmI) => void; notice: string | undefined }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    const candidate = token.trim();
    try {
      // Kept only once the server accepts it.
      const r = await api.GET('/whoami', { headers: { Authorization: `Bearer ${candidate}` } });
      if (r.response.status === 401) throw new Error('This token was not accepted: it is unknown, revoked or expired.');
      const me = must(r);
      session.set(candidate);
      onSignedIn(me);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main id="main" class="signin">
      <h1>trustgate</h1>
      <form onSubmit={submit} aria-describedby="signin-help">
        <p id="signin-help">Sign in with a trustgate API token. It is kept in this tab only, until you close it or sign out.</p>
        <label for="token">API token</label>
        <input
          id="token"
          name="token"
          type="password"
          autocomplete="off"
          spellcheck={false}
          required
          value={token}
          onInput={(e) => setToken((e.target as HTMLInputElement).value)}
        />
        <button type="submit" class="primary" disabled={busy || !token.trim()}>
          Sign in
        </button>
        {notice && <p class="status">{notice}</p>}
        {error && <Problem>{error}</Problem>}
      </form>
    </main>
  );
}

/** A path segment of the hash; a malformed escape is shown as typed rather than breaking the page. */
function decoded(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function Page({ hash, ctx }: { hash: string; ctx: Ctx }) {
  const [path] = hash.slice(1).split('?');
  const parts = (path ?? '').split('/').filter(Boolean);
  switch (parts[0]) {
    case 'repo':
      return <RepositoryPage ctx={ctx} gun={decoded(parts[1] ?? '')} />;
    case 'approvals':
      return <ApprovalsPage ctx={ctx} />;
    case 'expiring':
      return <ExpiringPage ctx={ctx} />;
    case 'audit':
      return <AuditPage ctx={ctx} />;
    case 'proxy':
      return <ProxyPage ctx={ctx} />;
    default:
      return <RepositoriesPage ctx={ctx} />;
  }
}

function App() {
  const [me, setMe] = useState<WhoAmI | undefined>();
  const [checking, setChecking] = useState(!!session.token());
  const [notice, setNotice] = useState<string | undefined>();
  const hash = useHash();
  const signOut = (why?: string) => {
    session.clear();
    setMe(undefined);
    setNotice(why);
  };
  useEffect(() => {
    whenUnauthorized(() => signOut('Your token is no longer accepted (revoked or expired): sign in again.'));
    if (!session.token()) return;
    api.GET('/whoami').then(
      (r) => {
        setChecking(false);
        if (r.data) setMe(r.data);
        else session.clear();
      },
      () => setChecking(false),
    );
  }, []);
  useEffect(() => {
    const title = NAV.find(([h]) => hash.startsWith(h))?.[1] ?? (hash.startsWith('#/repo/') ? 'Repository' : 'Repositories');
    document.title = `${title} · trustgate`;
  }, [hash]);
  if (checking) return <p class="muted">Loading…</p>;
  if (!me) return <SignIn notice={notice} onSignedIn={(m) => (setNotice(undefined), setMe(m))} />;
  const ctx: Ctx = { me, can: abilities(me) };
  const current = NAV.find(([h]) => hash.startsWith(h))?.[0] ?? '#/repositories';
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => (e.preventDefault(), document.getElementById('main')?.focus())}>
        Skip to content
      </a>
      <header class="top">
        <span class="brand">trustgate</span>
        <nav aria-label="Main">
          <ul>
            {NAV.map(([h, label]) => (
              <li key={h}>
                <a href={h} aria-current={current === h ? 'page' : undefined}>
                  {label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <span class="who">
          <span title={me.scopes.join(', ')}>
            {me.name} <span class="muted">({me.scopes.join(', ')})</span>
          </span>
          <button type="button" onClick={() => signOut('Signed out.')}>
            Sign out
          </button>
        </span>
      </header>
      <main id="main" tabIndex={-1}>
        <Page hash={hash} ctx={ctx} />
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
