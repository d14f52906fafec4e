/** User errors (name `UserError`) print one line and exit 1; anything else is internal: exit 2. */
export function exitCodeFor(err: unknown): number {
  return err instanceof Error && err.name === 'UserError' ? 1 : 2;
}

export function reportError(err: unknown): void {
  const message = err instanceof Error ? err.message : String(err);
  if (exitCodeFor(err) === 1) {
    process.stderr.write(`scalpels: ${message.split('\n')[0]}\n`);
    return;
  }
  process.stderr.write(`scalpels: internal error: ${message.split('\n')[0]}\n`);
  if (process.env.SCALPELS_DEBUG && err instanceof Error && err.stack)
    process.stderr.write(`${err.stack}\n`);
  else process.stderr.write('scalpels: set SCALPELS_DEBUG=1 for the stack trace\n');
}
