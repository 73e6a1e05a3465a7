/**
 * FIFO that releases each item `delayMs` after it entered (pure: the caller supplies
 * the time). Bounded: past `maxBytes` queued, new items are dropped, like a router queue.
 */
export class DelayQueue<T extends { length: number }> {
  private readonly items: Array<{ due: number, item: T }> = []
  private head = 0
  private bytes = 0
  dropped = 0

  constructor (readonly delayMs: number, readonly maxBytes = 64 * 1024 * 1024) {}

  /** Queues an item; false when dropped for lack of room. */
  push (item: T, now: number): boolean {
    if (this.bytes + item.length > this.maxBytes) {
      this.dropped++
      return false
    }
    this.items.push({ due: now + this.delayMs, item })
    this.bytes += item.length
    return true
  }

  /** Removes and returns, in arrival order, every item due at `now`. */
  takeDue (now: number): T[] {
    const out: T[] = []
    while (this.head < this.items.length) {
      const e = this.items[this.head]
      if (e === undefined || e.due > now) break
      out.push(e.item)
      this.bytes -= e.item.length
      this.head++
    }
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head)
      this.head = 0
    }
    return out
  }

  /** When the next item is due, undefined when empty. */
  nextDue (): number | undefined {
    return this.items[this.head]?.due
  }

  get size (): number {
    return this.items.length - this.head
  }
}
