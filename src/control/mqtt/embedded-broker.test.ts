import { describe, expect, it } from 'vitest';
import { CONTROL_USERNAME, fleetBrokerAuth } from './embedded-broker.js';

describe('fleetBrokerAuth', () => {
  it('knows the control plane by its secret and nodes by their tokens', () => {
    const auth = fleetBrokerAuth({ controlPassword: 's3cret', verifyNodeToken: (node, token) => token === `t-${node}` });
    expect(auth.authenticate(CONTROL_USERNAME, Buffer.from('s3cret'))).toEqual({ kind: 'control' });
    expect(auth.authenticate(CONTROL_USERNAME, Buffer.from('s3cre'))).toBeUndefined();
    expect(auth.authenticate(CONTROL_USERNAME, undefined)).toBeUndefined();
    expect(auth.authenticate('n1', Buffer.from('t-n1'))).toEqual({ kind: 'node', node: 'n1' });
    expect(auth.authenticate('n1', Buffer.from('t-n2'))).toBeUndefined();
    expect(auth.authenticate('a/b', Buffer.from('t-a/b'))).toBeUndefined();
  });
});
