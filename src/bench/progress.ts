/**
 * Progress of a bench run: a cli-progress bar over the planned measurement
 * time on a terminal, one line per step otherwise (logs, CI). Messages go
 * above the bar.
 */
import cliProgress from 'cli-progress';

export class BenchProgress {
  private readonly multi?: cliProgress.MultiBar;
  private readonly bar?: cliProgress.SingleBar;
  private done = 0;
  private stepIndex = 0;

  /** `totalMs`: the planned time of all measurements; `steps`: how many there are. */
  constructor(private readonly totalMs: number, private readonly steps: number) {
    if (process.stderr.isTTY) {
      this.multi = new cliProgress.MultiBar({
        format: ' {bar} {percentage}% | ETA {eta_formatted} | {step}',
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
        etaBuffer: 50,
      }, cliProgress.Presets.shades_classic);
      this.bar = this.multi.create(Math.max(1, Math.round(totalMs)), 0, { step: 'starting' });
    }
  }

  /** Starts a step of `plannedMs`; the function returned reports progress inside it. */
  step(label: string, plannedMs: number): { tick: (elapsedMs: number) => void; finish: () => void } {
    this.stepIndex++;
    const base = this.done;
    const text = `[${this.stepIndex}/${this.steps}] ${label}`;
    if (this.bar) this.bar.update(Math.round(base), { step: text });
    else process.stderr.write(`${text}\n`);
    return {
      tick: (elapsedMs) => this.bar?.update(Math.round(base + Math.min(elapsedMs, plannedMs)), { step: text }),
      finish: () => {
        this.done = base + plannedMs;
        this.bar?.update(Math.round(this.done), { step: text });
      },
    };
  }

  log(message: string): void {
    if (this.multi) this.multi.log(`${message}\n`);
    else process.stderr.write(`${message}\n`);
  }

  stop(): void {
    if (this.bar) this.bar.update(Math.round(this.totalMs), { step: 'done' });
    this.multi?.stop();
  }
}
