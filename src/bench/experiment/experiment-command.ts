export async function experimentCommand(_f: unknown): Promise<number> { return 1; }
