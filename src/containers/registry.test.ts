import { describe, expect, it } from 'vitest';
import { parseImageRef } from './registry.js';

describe('parseImageRef', () => {
  it('tells a registry host from a repository path, as Docker does', () => {
    expect(parseImageRef('tern/serve:0.1.0-amd64')).toEqual({ repository: 'tern/serve', tag: '0.1.0-amd64' });
    expect(parseImageRef('127.0.0.1:5000/tern/serve:1')).toEqual({ registry: '127.0.0.1:5000', repository: 'tern/serve', tag: '1' });
    expect(parseImageRef('registry.example/app')).toEqual({ registry: 'registry.example', repository: 'app', tag: 'latest' });
    expect(parseImageRef('localhost/tern/serve')).toEqual({ registry: 'localhost', repository: 'tern/serve', tag: 'latest' });
    expect(parseImageRef('busybox')).toEqual({ repository: 'busybox', tag: 'latest' });
    expect(parseImageRef('reg:5000/a@sha256:abc')).toEqual({ registry: 'reg:5000', repository: 'a', tag: 'sha256:abc' });
  });
});
