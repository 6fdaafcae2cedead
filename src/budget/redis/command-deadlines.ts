/**
 * Command timeouts without a timer per command. ioredis arms one timer for each command it sends (a Timeout
 * and a closure kept across the wait, linked into and out of the timer list); the budget scripts instead join
 * the line of the commands that share their timeout length. Those reach their deadlines in the order they were
 * sent, so one timer, set for the oldest command still waiting, watches the whole line. Replies come back in
 * order on a connection, so an answered command is nearly always the oldest: it leaves the line at once.
 */

/** A command as its line sees it: what ioredis's own timer reads and calls, and the line's links. */
export interface DeadlineCommand {
  /** True once answered (set by ioredis). */
  isResolved: boolean
  /** Fails the command (ioredis's own timer calls the same, with the same error). */
  reject: (err: Error) => void
  /** The line it waits in; null until sent. */
  deadlines: Deadlines | null
  /** performance.now() at which it times out. */
  deadline: number
  /** The command sent after it in the same line, while it waits. */
  nextInLine: DeadlineCommand | null
}

/** The commands waiting with one timeout length, oldest first, and the one timer that watches them. */
export class Deadlines {
  private oldest: DeadlineCommand | null = null
  private newest: DeadlineCommand | null = null
  private timer: NodeJS.Timeout | null = null

  private constructor(private readonly timeoutMs: number) {}

  private static readonly byTimeout = new Map<number, Deadlines>()

  /** Starts `command`'s timeout of `timeoutMs`; a command already waiting keeps its first deadline, as in ioredis. */
  static watch(command: DeadlineCommand, timeoutMs: number): void {
    if (command.deadlines !== null) return
    let line = Deadlines.byTimeout.get(timeoutMs)
    if (line === undefined) {
      line = new Deadlines(timeoutMs)
      Deadlines.byTimeout.set(timeoutMs, line)
    }
    line.push(command)
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

  /** `command` got its reply: it and the answered commands after it leave the line if it was the oldest. */
  answered(command: DeadlineCommand): void {
    if (command !== this.oldest) return
    this.dropFront(command.nextInLine)
    command.nextInLine = null
  }

  /** Fails the commands past their deadline, drops the answered ones before them, and waits for the next deadline. */
  private readonly expire = (): void => {
    this.timer = null
    const now = performance.now()
    let command = this.oldest
    while (command !== null && (command.isResolved || command.deadline <= now)) {
      const next = command.nextInLine
      command.nextInLine = null
      // A command that failed otherwise (error reply, lost connection) is rejected again: a no-op.
      if (!command.isResolved) command.reject(new Error('Command timed out'))
      command = next
    }
    this.dropFront(command)
    if (this.oldest !== null) this.timer = setTimeout(this.expire, Math.max(1, Math.ceil(this.oldest.deadline - now))).unref()
  }

  /** Makes `first` (or the first unanswered command after it) the oldest in line. */
  private dropFront(first: DeadlineCommand | null): void {
    let command = first
    while (command !== null && command.isResolved) {
      const next = command.nextInLine
      command.nextInLine = null
      command = next
    }
    this.oldest = command
    if (command === null) this.newest = null
  }
}
