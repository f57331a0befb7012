// Credentials in an Authorization header, as the proxy and the Notary API accept them.

/** The token in an Authorization header: `Bearer <t>` or Basic `<any>:<t>`. */
export function tokenOf(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const bearer = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  if (bearer) return bearer[1];
  const basic = /^Basic[ ]+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!basic) return undefined;
  const text = Buffer.from(basic[1]!, 'base64').toString('utf8');
  const i = text.indexOf(':');
  return i >= 0 ? text.slice(i + 1) : undefined;
}
