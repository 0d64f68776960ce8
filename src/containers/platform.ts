/**
 * Target platforms of tern's images: the OCI names (`linux/amd64`,
 * `linux/arm64`) and what each means on disk (Node's `process.arch`, the
 * Debian multiarch triplet where its shared libraries live, its ELF machine).
 */
export const PLATFORMS = {
  'linux/amd64': { os: 'linux', arch: 'amd64', nodeArch: 'x64', triplet: 'x86_64-linux-gnu', elfMachine: 62 },
  'linux/arm64': { os: 'linux', arch: 'arm64', nodeArch: 'arm64', triplet: 'aarch64-linux-gnu', elfMachine: 183 },
} as const;

export type PlatformName = keyof typeof PLATFORMS;
export type Platform = (typeof PLATFORMS)[PlatformName];

export function parsePlatform(name: string): PlatformName {
  if (name in PLATFORMS) return name as PlatformName;
  throw new Error(`unknown platform '${name}' (tern builds images for ${Object.keys(PLATFORMS).join(', ')})`);
}

/** OCI architecture name of a Node `process.arch` (x64 -> amd64). */
export function ociArch(nodeArch: string = process.arch): string {
  return nodeArch === 'x64' ? 'amd64' : nodeArch;
}

/** The platform this process runs on, when tern builds images for it. */
export function hostPlatform(): PlatformName | undefined {
  const name = `linux/${ociArch()}`;
  return process.platform === 'linux' && name in PLATFORMS ? (name as PlatformName) : undefined;
}

/** `linux/arm64` or, for an engine's `Os`/`Architecture` pair, the same spelling. */
export function platformOf(os: string | undefined, arch: string | undefined): string {
  return `${os || 'linux'}/${ociArch(arch || 'unknown')}`;
}

/** Repository of the model-server image `tern image build` makes. */
export const IMAGE_REPOSITORY = 'tern/serve';

/** `tern/serve:<tern version>-<arch>`: one tag per architecture, so a node picks its own. */
export function defaultImageTag(version: string, platform: PlatformName): string {
  return `${IMAGE_REPOSITORY}:${version}-${PLATFORMS[platform].arch}`;
}
