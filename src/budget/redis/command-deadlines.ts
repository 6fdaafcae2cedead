/**
 * Command timeouts without a timer per command. ioredis arms one timer for each command it sends (a Timeout
 * and a closure kept across the wait, linked into and out of the timer list); the budget scripts instead join
 * the line of the commands that share their timeout length. Those reach their deadlines in the order they were
 * sent, so one timer, set for the oldest command still waiting, watches the whole line. Replies come back in
 * order on a connection, so a command that is done is nearly always the oldest: it leaves the line at once.
 */

/** A command as its line sees it: what ioredis's own timer calls, and the line's links. */
export interface DeadlineCommand {
  /** Fails the command (ioredis's own timer calls the same, with the same error). */
  reject: (err: Error) => void
  /** The line it waits in; null until sent. */
  deadlines: Deadlines | null
  /** performance.now() at which it times out. */
  deadline: number
  /** The command sent after it in the same line, while it waits. */
  nextInLine: DeadlineCommand | null
  /** Answered or failed: its deadline no longer matters. */
  done: boolean
}

/** The commands waiting with one timeout length, oldest first, and the one timer that watches them. */
export class Deadlines {
  private oldest: DeadlineCommand | null = null
  private newest: DeadlineCommand | null = null
  private timer: NodeJS.Timeout | null = null

  private constructor(private readonly timeoutMs: number) {}

  private static readonly byTimeout = new Map<number, Deadlines>()

  /** Starts `command`'s timeout of `timeoutMs`; a command already sent keeps its first deadline, as in ioredis. */
  static watch(command: DeadlineCommand, timeoutMs: number): void {
    if (command.deadlines !== null) return
    let line = Deadlines.byTimeout.get(timeoutMs)
    if (line === undefined) {
      line = new Deadlines(timeoutMs)
      Deadlines.byTimeout.set(timeoutMs, line)
    }
    line.push(command)
  }

  /** `command` was answered or failed: if it was the oldest, it and the done commands after it leave the line. */
  static done(command: DeadlineCommand): void {
    command.done = true
    const line = command.deadlines
    if (line !== null && command === line.oldest) line.dropFront(command)
  }

  private push(command: DeadlineCommand): void {
    command.deadlines = this
    command.deadline = performance.now() + this.timeoutMs
    if (this.newest === null) this.oldest = command
    else this.newest.nextInLine = command
    this.newest = command
    // Left running when the line empties (clearing and re-arming it per command is the cost saved): it finds
    // the line empty and stops. Unref'd: a waiting command's connection keeps the process alive, not this.
    this.timer ??= setTimeout(this.expire, this.timeoutMs).unref()
  }

  /** Fails the commands past their deadline, drops the done ones before them, and waits for the next deadline. */
  private readonly expire = (): void => {
    this.timer = null
    const now = performance.now()
    let command = this.oldest
    while (command !== null && (command.done || command.deadline <= now)) {
      const next = command.nextInLine
      command.nextInLine = null
      if (!command.done) {
        command.done = true
        command.reject(new Error('Command timed out'))
      }
      command = next
    }
    this.dropFront(command)
    if (this.oldest !== null) this.timer = setTimeout(this.expire, Math.max(1, Math.ceil(this.oldest.deadline - now))).unref()
  }

  /** Makes the first command from `first` on that is not done the oldest in line. */
  private dropFront(first: DeadlineCommand | null): void {
    let command = first
    while (command !== null && command.done) {
      const next = command.nextInLine
      command.nextInLine = null
      command = next
    }
    this.oldest = command
    if (command === null) this.newest = null
  }
}
