import { describeError, mapDatabaseError } from '../../src/db/errors';

describe('mapDatabaseError', () => {
  it.each([['57P01'], ['08006'], ['ECONNREFUSED'], ['CONNECTION_CLOSED'], ['DEADLINE']])('%s is database_unavailable (503, retried)', (code) => {
    expect(mapDatabaseError(Object.assign(new Error('x'), { code }))).toMatchObject({ code: 'database_unavailable', status: 503 });
  });

  it('an unexpected error is internal_error, and what it was goes to the log (never the answer)', () => {
    const we = mapDatabaseError(Object.assign(new Error('could not open relation with OID 1234'), { name: 'PostgresError', code: 'XX000' }));
    expect(we).toMatchObject({ code: 'internal_error', status: 500, message: 'database error XX000' });
    expect(describeError(we)).toEqual({
      name: 'WorkerError', code: 'internal_error', message: 'database error XX000',
      detail: { name: 'PostgresError', code: 'XX000', message: 'could not open relation with OID 1234' },
    });
    // An error with no code at all still says what it was.
    expect(describeError(mapDatabaseError(new TypeError('Cannot read properties of undefined')))).toMatchObject({ detail: { name: 'TypeError', message: 'Cannot read properties of undefined' } });
  });
});
