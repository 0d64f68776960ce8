/**
 * The OCR pipeline model end to end through the server: images rendered here
 * with sharp, sent as an OIP BYTES tensor and as a raw upload to the `ocr` app.
 */
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_REPO, postJson, startTestServer } from './helpers.js';

let server: Awaited<ReturnType<typeof startTestServer>>;

async function renderText(lines: { text: string; y: number }[], width = 640, height = 240): Promise<Buffer> {
  const texts = lines.map((l) => `<text x="40" y="${l.y}" font-family="DejaVu Sans" font-size="40" fill="black">${l.text}</text>`).join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="white"/>${texts}</svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}

beforeAll(async () => {
  server = await startTestServer({ repository: DEMO_REPO });
});
afterAll(async () => server?.close());

describe('OCR through the server', () => {
  it('reads two rendered lines from an OIP BYTES tensor (binary extension)', async () => {
    const png = await renderText([{ text: 'tern 2026', y: 80 }, { text: 'edge serving', y: 170 }]);
    const framed = Buffer.concat([Buffer.alloc(4), png]);
    framed.writeUInt32LE(png.length, 0);
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: framed.length } }] }));
    const res = await fetch(`${server.url}/v2/models/ocr/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
      body: new Uint8Array(Buffer.concat([header, framed])),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as any;
    const text = body.outputs.find((o: { name: string }) => o.name === 'text');
    expect(text.data).toEqual(['tern 2026', 'edge serving']);
    const boxes = body.outputs.find((o: { name: string }) => o.name === 'boxes');
    expect(boxes.shape).toEqual([2, 4, 2]);
    // The first line's box lies around y = 80 (baseline), inside the image.
    const ys = boxes.data.slice(0, 8).filter((_: number, i: number) => i % 2 === 1);
    expect(Math.min(...ys)).toBeGreaterThan(30);
    expect(Math.max(...ys)).toBeLessThan(110);
  });

  it('answers the ocr app for a raw image upload', async () => {
    const png = await renderText([{ text: 'HELLO WORLD', y: 120 }]);
    const res = await fetch(`${server.url}/ocr/predict`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(png) });
    expect(res.status).toBe(200);
    const body = (await res.json()) as any;
    expect(body.default).toBe(false);
    expect(body.output.text).toEqual(['HELLO WORLD']);
    expect(body.output.scores[0]).toBeGreaterThan(0.8);
  });

  it('takes a base64 image in the app JSON form too', async () => {
    const jpeg = await sharp(await renderText([{ text: 'tern', y: 120 }])).jpeg().toBuffer();
    const { status, body } = await postJson(`${server.url}/ocr/predict`, { input: jpeg.toString('base64') });
    expect(status).toBe(200);
    expect(body.output.text).toEqual(['tern']);
  });

  it('refuses bytes that are not an image with 400 naming the input', async () => {
    const res = await fetch(`${server.url}/ocr/predict`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: 'not a png at all' });
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error).toMatch(/input 'image': image could not be decoded/);
  });
});
