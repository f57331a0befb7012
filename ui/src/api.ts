// The management API's client, typed by the types openapi-typescript generates from openapi.yaml
// at build time (src/generated/, not committed). The token rides in the Authorization header only.
import createClient from 'openapi-fetch';
import type { components, paths } from './generated/api';

export type Schemas = components['schemas'];

const TOKEN_KEY = 'trustgate.token';

/** The signed-in token: session storage, so it ends with the tab and never enters a URL. */
export const session = {
  token: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set: (token: string) => sessionStorage.setItem(TOKEN_KEY, token),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** Called when the API answers 401 to a signed-in page: the token was revoked or expired. */
let onUnauthorized: () => void = () => undefined;
export const whenUnauthorized = (f: () => void) => {
  onUnauthorized = f;
};

export const api = createClient<paths>({ baseUrl: `${location.origin}/api/v1` });
api.use({
  onRequest({ request }) {
    const token = session.token();
    if (token) request.headers.set('Authorization', `Bearer ${token}`);
    return request;
  },
  onResponse({ response }) {
    if (response.status === 401 && session.token()) onUnauthorized();
    return response;
  },
});

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The body of a successful answer, else an ApiError with the API's own message. */
export function must<T>(r: { data?: T; error?: unknown; response: Response }): T {
  if (r.error !== undefined || r.data === undefined) {
    const e = (r.error as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new ApiError(r.response.status, e?.code ?? 'HTTP_' + r.response.status, e?.message ?? r.response.statusText);
  }
  return r.data;
}

export const errorText = (e: unknown): string =>
  e instanceof ApiError ? `${e.message} (${e.status} ${e.code})` : e instanceof Error ? e.message : String(e);
