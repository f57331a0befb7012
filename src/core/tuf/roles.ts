// Role names: the four base roles and delegations under `targets/`.
import { InvalidRoleError } from './errors.js';

export const BASE_ROLES = ['root', 'targets', 'snapshot', 'timestamp'] as const;
export type BaseRole = (typeof BASE_ROLES)[number];

const DELEGATION_NAME = /^targets(\/[-a-z0-9_]+)+$/;

export function isBaseRole(name: string): name is BaseRole {
  return (BASE_ROLES as readonly string[]).includes(name);
}

/** A delegation name in clean form: `targets/a/b`, lower-case segments, no wildcard, under 256 bytes. */
export function isDelegationName(name: string): boolean {
  return name.length < 256 && DELEGATION_NAME.test(name);
}

/** Any role that metadata may be stored under. */
export function isValidRole(name: string): boolean {
  return isBaseRole(name) || isDelegationName(name);
}

export function assertValidRole(name: string): void {
  if (!isValidRole(name)) throw new InvalidRoleError(name);
}

/** Whether a role is `targets` or one of its delegations (signed by targets keys, not server keys). */
export function isTargetsRole(name: string): boolean {
  return name === 'targets' || isDelegationName(name);
}

/** `targets/a/b` → `targets/a`; `targets/a` → `targets`. */
export function parentRole(name: string): string {
  return name.slice(0, name.lastIndexOf('/'));
}

/** Nesting depth: targets 0, targets/a 1, targets/a/b 2. */
export function roleDepth(name: string): number {
  return name.split('/').length - 1;
}
