import { describe, expect, it } from 'vitest';
import { staticImports } from './serve-closure.js';

describe('staticImports', () => {
  it('finds static imports and re-exports, not dynamic imports or the word "from" in strings', () => {
    const source = [
      "import { a } from 'pkg-a';",
      "export { b } from './b.js';",
      "import 'side-effect';",
      "const lazy = () => import('sharp');",
      "cmd.option('--from <host>', 'lab host the load comes from', 'client');",
      "const s = \"copied from 'nowhere'\";",
    ].join('\n');
    expect(staticImports(source).sort()).toEqual(['./b.js', 'pkg-a', 'side-effect']);
  });
});
