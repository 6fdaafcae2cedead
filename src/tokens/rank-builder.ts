/**
 * Builds a tiktoken rank map from js-tiktoken's compressed rank text (`! <first rank> <base64> <base64> …`
 * lines) in resumable steps, so an encoder can be built in slices between other work on the event loop.
 */
export class RankBuilder {
  readonly ranks = new Map<string, number>()
  private pos = 0
  private lineEnd = -1
  private field = 0
  private rank = Number.NaN

  constructor(private readonly text: string) {}

  get done(): boolean {
    return this.pos >= this.text.length
  }

  /** Parses until the text is done (true) or `deadline` (a `performance.now()` time) has passed (false). */
  step(deadline: number = Number.POSITIVE_INFINITY): boolean {
    const text = this.text
    const length = text.length
    let parsed = 0
    while (this.pos < length) {
      if (this.lineEnd < this.pos) {
        // Found once per line: the files hold one very long line, so a search per token would be quadratic.
        const end = text.indexOf('\n', this.pos)
        this.lineEnd = end === -1 ? length : end
        this.field = 0
      }
      let end = text.indexOf(' ', this.pos)
      if (end === -1 || end > this.lineEnd) end = this.lineEnd
      if (this.field === 1) this.rank = Number.parseInt(text.slice(this.pos, end), 10)
      else if (this.field > 1 && end > this.pos && !Number.isNaN(this.rank)) {
        this.ranks.set(Buffer.from(text.slice(this.pos, end), 'base64').toString('latin1'), this.rank++)
      }
      this.field += 1
      this.pos = end + 1
      if (++parsed % 2048 === 0 && performance.now() > deadline) return this.done
    }
    return true
  }
}
