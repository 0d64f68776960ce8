import { describe, expect, it } from 'vitest';
import { agentClientId, isValidNodeId, mayPublish, maySubscribe, nodeTopics, type Principal } from './acl.js';

const n1: Principal = { kind: 'node', node: 'n1' };
const control: Principal = { kind: 'control' };

describe('MQTT ACL', () => {
  it('lets a node publish only its own heartbeat, status and presence', () => {
    for (const t of nodeTopics('n1').publish) expect(mayPublish(n1, t), t).toBe(true);
    for (const t of ['tern/nodes/n2/heartbeat', 'tern/nodes/n1/desired', 'tern/nodes/n1/commands', 'tern/nodes/n1/heartbeat/x',
      'tern/nodes/n10/heartbeat', 'tern/nodes/n1', 'tern/other', '$SYS/x']) {
      expect(mayPublish(n1, t), t).toBe(false);
    }
  });

  it('lets a node subscribe only to its own desired state and commands and the routing table, without wildcards', () => {
    for (const t of nodeTopics('n1').subscribe) expect(maySubscribe(n1, t), t).toBe(true);
    expect(mayPublish(n1, 'tern/routes')).toBe(false);
    for (const t of ['tern/nodes/n2/desired', 'tern/+', 'tern/#', 'tern/nodes/+/desired', 'tern/nodes/n1/#', 'tern/nodes/n1/+', '#', 'tern/nodes/n1/heartbeat']) {
      expect(maySubscribe(n1, t), t).toBe(false);
    }
  });

  it('lets the control plane do anything but write $SYS', () => {
    expect(mayPublish(control, 'tern/nodes/n1/desired')).toBe(true);
    expect(mayPublish(control, '$SYS/broker/x')).toBe(false);
    expect(maySubscribe(control, '#')).toBe(true);
  });

  it('accepts node ids that are one safe topic level', () => {
    for (const id of ['n1', 'node-7.edge_a', 'a'.repeat(128)]) expect(isValidNodeId(id), id).toBe(true);
    for (const id of ['', 'a/b', '+', '#', '$SYS', 'a b', 'a'.repeat(129)]) expect(isValidNodeId(id), id).toBe(false);
    expect(agentClientId('n1')).toBe('tern-agent-n1');
  });
});
