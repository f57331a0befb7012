// The publish body parser (src/notary/multipart.ts): Go mime/multipart semantics, raw filenames
// with slashes, and the Content-Disposition parameter forms clients may send.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { MultipartError, formDataBoundary, parseMediaType, parseMultipart } from '../../src/notary/multipart.js';
import { initRepo, raw, tufPath } from '../helpers/tuf-builder.js';
import { newGun, rawRequest, startServer, type Server } from './support.js';

const B = 'XyZ';
const parse = (text: string) => parseMultipart(Buffer.from(text), B).map((p) => [p.filename, p.bytes.toString()]);

test('CRLF parts in order, filenames raw with slashes', () => {
  const body = `--${B}\r\nContent-Disposition: form-data; name="files"; filename="root"\r\nContent-Type: application/octet-stream\r\n\r\n{"a":1}\r\n--${B}\r\nContent-Disposition: form-data; name="files"; filename="targets/releases"\r\n\r\n{"b":2}\r\n--${B}--\r\n`;
  assert.deepEqual(parse(body), [
    ['root', '{"a":1}'],
    ['targets/releases', '{"b":2}'],
  ]);
});

test('preamble and epilogue are ignored; LF-only line endings and blanks after the delimiter are accepted', () => {
  const body = `preamble line\r\n--${B}  \nContent-Disposition: form-data; filename="targets"\n\n{"x":1}\n--${B}--\nepilogue --${B}\r\n`;
  assert.deepEqual(parse(body), [['targets', '{"x":1}']]);
});

test('delimiter-like text inside content does not end the part; content keeps inner CRLFs and trailing bytes', () => {
  const content = `line1\r\n--${B}X not a delimiter\r\n--${B}-- is, only after a newline`;
  const body = `--${B}\r\nContent-Disposition: form-data; filename="targets"\r\n\r\n${content.replace(`\r\n--${B}--`, '\r\n-- B--')}\r\n\r\n--${B}--`;
  const [[, got]] = parse(body) as [[string, string]];
  assert.equal(got, `${content.replace(`\r\n--${B}--`, '\r\n-- B--')}\r\n`);
});

test('an empty part, a part without headers, and a body that is only the close delimiter', () => {
  assert.deepEqual(parse(`--${B}\r\nContent-Disposition: form-data; filename="targets"\r\n\r\n\r\n--${B}--\r\n`), [['targets', '']]);
  assert.deepEqual(parse(`--${B}\r\nContent-Disposition: form-data; filename="targets"\r\n\r\n--${B}--\r\n`), [['targets', '']]);
  assert.deepEqual(parse(`--${B}\r\n\r\nbody\r\n--${B}--\r\n`), [['', 'body']]);
  assert.deepEqual(parse(`--${B}--\r\n`), []);
  assert.deepEqual(parse(`--${B}--`), []);
  // a line that only starts like the delimiter is preamble
  assert.deepEqual(parse(`--${B}X\r\n\r\nx\r\n--${B}--`), []);
});

test('malformed bodies throw MALFORMED_UPLOAD', () => {
  for (const body of [
    '',
    'no delimiter',
    `--${B}\r\nContent-Disposition: form-data; filename="t"\r\n\r\n{}`,
    `--${B}\r\nContent-Disposition: form-data; filename="t"`,
    `--${B}\r\nbad header line\r\n\r\nx\r\n--${B}--`,
  ]) {
    assert.throws(
      () => parseMultipart(Buffer.from(body), B),
      (e: unknown) => e instanceof MultipartError && e.kind === 'MALFORMED_UPLOAD',
      JSON.stringify(body),
    );
  }
});

test('Content-Disposition forms: quoted, token, escaped quotes, case-insensitive names, RFC 2231 filename*, duplicates refused', () => {
  const fn = (cd: string) => parse(`--${B}\r\ncontent-disposition: ${cd}\r\n\r\nx\r\n--${B}--`)[0]![0];
  assert.equal(fn('form-data; name="files"; filename="targets/a"'), 'targets/a');
  assert.equal(fn('form-data; name=files; filename=targets'), 'targets');
  assert.equal(fn('form-data; FILENAME="root"'), 'root');
  assert.equal(fn('form-data; filename="a\\"b"'), 'a"b');
  assert.equal(fn("form-data; filename*=UTF-8''targets%2Freleases"), 'targets/releases');
  assert.equal(fn('form-data; filename="x"; filename*=utf-8\'\'targets%2Fqa'), 'targets/qa');
  assert.equal(fn('attachment; filename="targets"'), 'targets', 'Go reads filename whatever the disposition type');
  assert.equal(fn('form-data; filename="é/ü"'), 'é/ü', 'UTF-8 filenames stay UTF-8');
  assert.equal(fn('form-data; filename="a"; filename="b"'), '');
  assert.equal(fn('form-data; filename="unterminated'), '');
  assert.equal(fn('form-data; name="files"'), '');
});

test('the Content-Type must be multipart/form-data with a boundary', () => {
  assert.equal(formDataBoundary('multipart/form-data; boundary=abc'), 'abc');
  assert.equal(formDataBoundary('Multipart/Form-Data; Boundary="a b:c"'), 'a b:c');
  assert.equal(formDataBoundary('multipart/form-data'), undefined);
  assert.equal(formDataBoundary('multipart/mixed; boundary=abc'), undefined);
  assert.equal(formDataBoundary('application/json'), undefined);
  assert.equal(formDataBoundary(undefined), undefined);
  assert.equal(formDataBoundary(`multipart/form-data; boundary=${'a'.repeat(71)}`), undefined);
  assert.equal(parseMediaType('text/plain; charset=utf-8;')?.params.get('charset'), 'utf-8');
});

let s: Server;
before(async () => {
  s = await startServer();
});
after(() => s.stop());

test('over HTTP: a publish using filename* and LF line endings is accepted with the delegation name intact', async () => {
  const gun = newGun('mp');
  const repo = await initRepo(s.agent, gun, { serverSnapshot: true });
  assert.equal((await repo.addDelegation('targets/releases')).status, 200);
  const [[, bytes]] = (await repo.files([['targets/releases', repo.next('targets/releases')]])) as [[string, Buffer]];
  const body = Buffer.concat([
    Buffer.from(`--${B}\nContent-Disposition: form-data; name="files"; filename*=UTF-8''targets%2Freleases\n\n`),
    bytes!,
    Buffer.from(`\n--${B}--\n`),
  ]);
  const res = await rawRequest(s, 'POST', tufPath(gun), { headers: { 'Content-Type': `multipart/form-data; boundary=${B}` }, body });
  assert.equal(res.status, 200, res.body.toString());
  assert.ok((await raw(s.agent.get(tufPath(gun, 'targets/releases.json')))).body.equals(bytes!));
});
