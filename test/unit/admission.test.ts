import { refuseRead, type ReadState } from '../../server/admission';

const SERVING: ReadState = { epoch: 4, rebalancing: false, leased: true, keyPending: false };

describe('refuseRead: which replicated read a server answers', () => {
  test('in its epoch, rebalanced, leased, the key decided: served', () => {
    expect(refuseRead(4, SERVING)).toBeUndefined();
  });

  test.each<[string, number, Partial<ReadState>, string]>([
    ['an older epoch in the request', 3, {}, 'epoch_mismatch'],
    ['a newer epoch in the request', 5, {}, 'epoch_mismatch'],
    ['a rebalance under way here', 4, { rebalancing: true }, 'rebalancing'],
    [
      'no lease (paused past the failure timeout, maybe expelled)',
      4,
      { leased: false },
      'lease_expired',
    ],
    ['an undecided transaction on the key', 4, { keyPending: true }, 'key_busy'],
    // The first reason wins: a stale request is told about the epoch, not the key.
    ['a stale request for a busy key', 3, { keyPending: true, leased: false }, 'epoch_mismatch'],
  ])('%s: refused (retry, %s)', (_name, epoch, state, reason) => {
    expect(refuseRead(epoch, { ...SERVING, ...state })).toMatchObject({ kind: 'retry', reason });
  });
});
