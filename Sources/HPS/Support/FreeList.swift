/// A free list of reusable objects (scratch buffers, workspaces): a call takes one, or makes one when
/// none is free, and gives it back when done, so steady-state calls do not allocate and the list grows
/// only when more calls run at once than ever before. Shared by the package's pools with package access.
///
/// `@unchecked Sendable`: the list itself is only read and changed under `lock`; an item is used by one
/// caller at a time (between `take` and `giveBack`).
package final class FreeList<Item: AnyObject>: @unchecked Sendable {
    @usableFromInline let lock = Lock()
    @usableFromInline var free: [Item]

    /// A list holding `items`.
    package init(_ items: [Item] = []) { free = items }

    /// A free item, or nil when every item is taken.
    @inlinable package func take() -> Item? { lock.withLock { free.popLast() } }

    /// Returns `item` to the list.
    @inlinable package func giveBack(_ item: Item) { lock.withLock { free.append(item) } }

    /// Runs `body` with a free item (made by `make` when none is free) and gives the item back after.
    @inlinable
    package func with<T>(orMake make: () -> Item, _ body: (Item) throws -> T) rethrows -> T {
        let item = take() ?? make()
        defer { giveBack(item) }
        return try body(item)
    }
}
