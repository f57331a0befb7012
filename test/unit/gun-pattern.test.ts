// The shared GUN pattern matcher (src/core/tuf/gun-pattern.ts): anchoring, `*` within one
// segment, `**` as whole segments only, what is refused, and the specificity order.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  GunPatternError,
  compareSpecificity,
  compileGunPattern,
  matchGunPattern,
  specificity,
  validateGunPattern,
} from '../../src/core/tuf/gun-pattern.js';

describe('matching', () => {
  const cases: Array<[string, string, boolean]> = [
    // Exact names are anchored at both ends.
    ['registry.example.com/team/app', 'registry.example.com/team/app', true],
    ['registry.example.com/team/app', 'registry.example.com/team/app-evil', false],
    ['registry.example.com/team/app', 'registry.example.com/team/app/sub', false],
    ['registry.example.com/team/app', 'xregistry.example.com/team/app', false],
    ['registry.example.com/team/app', 'evil.com/registry.example.com/team/app', false],
    ['registry.example.com/team/app', 'REGISTRY.example.com/team/app', false],
    // `.` and other regular-expression characters are literal.
    ['a.b/c', 'axb/c', false],
    ['a.b/c', 'a.b/c', true],
    ['host:5000/team/*', 'host:5000/team/app', true],
    ['host:5000/team/*', 'host:50000/team/app', false],
    // `*` stays within one segment and may match nothing.
    ['a/*', 'a/b', true],
    ['a/*', 'a/b/c', false],
    ['a/*', 'a', false],
    ['a/*', 'a/', false],
    ['a/b*', 'a/b', true],
    ['a/b*', 'a/bx', true],
    ['a/b*', 'a/b/x', false],
    ['a/*b', 'a/xb', true],
    ['a/*b', 'a/x/b', false],
    ['a/*/c', 'a/b/c', true],
    ['a/*/c', 'a/b/x/c', false],
    ['*', 'a', true],
    ['*', 'a/b', false],
    // `**` is one or more whole segments.
    ['a/**', 'a/b', true],
    ['a/**', 'a/b/c/d', true],
    ['a/**', 'a', false],
    ['a/**', 'a/', false],
    ['a/**', 'ab/c', false],
    ['**/app', 'x/y/app', true],
    ['**/app', 'app', false],
    ['**/app', 'x/y/app-evil', false],
    ['a/**/z', 'a/b/z', true],
    ['a/**/z', 'a/b/c/z', true],
    ['a/**/z', 'a/z', false],
    ['**', 'anything/at/all', true],
  ];
  for (const [pattern, name, want] of cases) {
    test(`${pattern} ${want ? 'matches' : 'does not match'} ${name}`, () => {
      assert.equal(matchGunPattern(pattern, name), want);
      assert.equal(compileGunPattern(pattern).test(name), want);
      assert.equal(compileGunPattern(pattern).regexp.test(name), want);
    });
  }
});

describe('validation', () => {
  test('refused: empty, too long, empty segments, `..`, `**` inside a segment, other characters', () => {
    for (const p of [
      '',
      'a'.repeat(256),
      'a//b',
      '/a',
      'a/',
      'a/../b',
      '..',
      'a/..b',
      'a/**x',
      'a/x**',
      'a/***',
      'a/b c',
      'a/(b|c)',
      'a/b$',
      'a/b?',
      'a/[b]',
      'a\\b',
      'a/b+',
    ]) {
      assert.throws(() => validateGunPattern(p), GunPatternError, JSON.stringify(p));
      assert.throws(() => compileGunPattern(p), GunPatternError, JSON.stringify(p));
    }
  });
  test('the message names the segment', () => {
    assert.throws(() => validateGunPattern('a/**x'), /invalid pattern segment "\*\*x"/);
    assert.throws(() => validateGunPattern('a//b'), /invalid pattern segment ""/);
  });
  test('accepted: GUN characters, `*` anywhere in a segment, `**` as a segment', () => {
    for (const p of ['a', 'a/b', 'host:5000/a_b-c.d/e@f', '*', '**', 'a/*', 'a/**', '**/b', 'a/*x*/b', 'a'.repeat(255)])
      validateGunPattern(p);
  });
});

describe('specificity', () => {
  test('exact names first, then more literal characters; ties keep their order', () => {
    const patterns = ['team/**', 'team/app', 'team/app*', '**', 'team/*', 'team/app-*'];
    const sorted = patterns.map((p, i) => ({ p, i, s: specificity(p) })).sort((a, b) => compareSpecificity(a.s, b.s) || a.i - b.i);
    assert.deepEqual(
      sorted.map((x) => x.p),
      ['team/app', 'team/app-*', 'team/app*', 'team/**', 'team/*', '**'],
    );
    assert.deepEqual(specificity('team/app'), { exact: true, literal: 8 });
    assert.deepEqual(compileGunPattern('a/**').specificity, { exact: false, literal: 2 });
  });
});
