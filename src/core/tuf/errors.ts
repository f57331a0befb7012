// Typed failures of TUF checks. The names are the ones notary's client decodes from an
// INVALID_UPDATE body, so an error raised here can travel to a real client unchanged.

export type ValidationErrorName = 'ErrValidation' | 'ErrBadHierarchy' | 'ErrBadRoot' | 'ErrBadTargets' | 'ErrBadSnapshot';

/** A publish (or a pull-side check) that breaks a TUF rule. */
export class TufValidationError extends Error {
  override name = 'TufValidationError';
  constructor(
    readonly kind: ValidationErrorName,
    message: string,
    readonly missing?: string,
  ) {
    super(message);
  }
  /** Notary's SerializableError, the `detail` of INVALID_UPDATE. */
  toDetail(): { Name: string; Error: Record<string, string> } {
    return { Name: this.kind, Error: this.missing ? { Missing: this.missing, Msg: this.message } : { Msg: this.message } };
  }
}

/** Bytes that are not a `{signed, signatures}` JSON document. */
export class MalformedMetadataError extends Error {
  override name = 'MalformedMetadataError';
}

/** A role or delegation name that is not allowed. */
export class InvalidRoleError extends Error {
  override name = 'InvalidRoleError';
  constructor(readonly role: string) {
    super(`invalid role ${role}`);
  }
}
