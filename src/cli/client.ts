// The CLI's HTTP client for trustgate's REST API: bearer token, JSON in and out, and one error
// type that carries the exit code CI relies on (3 for denied, 1 for everything else that failed).
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export const EXIT = { OK: 0, ERROR: 1, USAGE: 2, DENIED: 3 } as const;

export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: number = EXIT.ERROR,
  ) {
    super(message);
  }
}

export interface ApiAnswer<T = Record<string, unknown>> {
  status: number;
  body: T;
  headers: Headers;
}

export class ApiClient {
  readonly base: string;
  constructor(
    url: string,
    private token: string | undefined,
    private timeoutMs = 300_000,
  ) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new CliError(
        `the server URL ${JSON.stringify(url)} is not a URL (use --url or TRUSTGATE_URL, e.g. https://trustgate.example.com:4443)`,
        EXIT.USAGE,
      );
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CliError(`the server URL must be http:// or https://`, EXIT.USAGE);
    this.base = url.replace(/\/+$/, '');
  }

  private async send(method: string, path: string, body: unknown, accept: string): Promise<Response> {
    const headers: Record<string, string> = { Accept: accept };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    try {
      return await fetch(`${this.base}${path}`, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message ?? (e as Error).message;
      throw new CliError(`cannot reach trustgate at ${this.base}: ${why}`);
    }
  }

  /**
   * GETs a binary answer into a new file `dest` (mode 0600; it must not exist). Errors as call();
   * a download cut short removes the partial file. Returns the bytes written.
   */
  async download(path: string, dest: string, accept: string): Promise<number> {
    const res = await this.send('GET', path, undefined, accept);
    if (!res.ok) await this.answer(res, 'GET', path, {}); // throws the API's error
    if (!res.body) throw new CliError(`GET ${path}: the server answered ${res.status} without a body`);
    let out;
    try {
      out = createWriteStream(dest, { flags: 'wx', mode: 0o600 });
      await once(out, 'open');
    } catch (e) {
      await res.body.cancel();
      throw new CliError(`cannot write ${dest}: ${(e as Error).message} (it must not exist yet)`);
    }
    try {
      await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), out);
    } catch (e) {
      await rm(dest, { force: true });
      throw new CliError(`the download of ${path} failed: ${(e as Error).message}`);
    }
    return out.bytesWritten;
  }

  /** Sends a request; answers of 2xx come back, others become CliErrors (403/401 → exit 3). */
  async call<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    opts: { accept?: string; allow?: number[] } = {},
  ): Promise<ApiAnswer<T>> {
    return this.answer<T>(await this.send(method, path, body, opts.accept ?? 'application/json'), method, path, opts);
  }

  private async answer<T>(res: Response, method: string, path: string, opts: { allow?: number[] }): Promise<ApiAnswer<T>> {
    const text = await res.text();
    let parsed: unknown = text;
    if ((res.headers.get('content-type') ?? '').includes('json') && text.length) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (res.ok || opts.allow?.includes(res.status)) return { status: res.status, body: parsed as T, headers: res.headers };
    const err = (parsed as { error?: { code?: string; message?: string } })?.error;
    const msg = err?.message ?? (typeof parsed === 'string' && parsed ? parsed.slice(0, 200) : `HTTP ${res.status}`);
    if (res.status === 401) throw new CliError(`not authenticated: ${msg} (set --token or TRUSTGATE_TOKEN)`, EXIT.DENIED);
    if (res.status === 403) throw new CliError(`denied: ${msg}`, EXIT.DENIED);
    if (res.status === 404 && !err) throw new CliError(`${method} ${path}: not found on ${this.base} (is this a trustgate server?)`);
    throw new CliError(`${err?.code ? `${err.code}: ` : ''}${msg}`);
  }
}
