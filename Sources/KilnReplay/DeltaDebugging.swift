/// Zeller and Hildebrandt's ddmin ("Simplifying and Isolating Failure-Inducing Input", 2002) over the positions of
/// a list. Given that `fails(all)` holds, returns a 1-minimal subset (removing any one element more makes `fails`
/// false), in the original order. `fails` is asked each distinct subset at most once (results are cached), never
/// the full list, and the empty list first (a failure that needs none of the elements shrinks to nothing).
/// A `fails` that cannot run any more (a budget ran out) returns false; the result is then the smallest failing
/// subset found so far.
public enum DeltaDebugging {
    public static func minimize<Element>(_ elements: [Element], fails: ([Element]) throws -> Bool) rethrows -> [Element] {
        var cache: [[Int]: Bool] = [Array(elements.indices): true]
        func test(_ positions: [Int]) throws -> Bool {
            if let known = cache[positions] { return known }
            let result = try fails(positions.map { elements[$0] })
            cache[positions] = result
            return result
        }
        if elements.isEmpty { return [] }
        if try test([]) { return [] }
        var current = Array(elements.indices)
        var granularity = 2
        while current.count >= 2 {
            let chunks = split(current, into: granularity)
            var reduced = false
            for chunk in chunks where try test(chunk) {
                current = chunk
                granularity = 2
                reduced = true
                break
            }
            if !reduced {
                // With two chunks each complement is the other chunk: the cache answers it.
                for chunk in chunks {
                    let complement = current.filter { !chunk.contains($0) }
                    if try test(complement) {
                        current = complement
                        granularity = max(granularity - 1, 2)
                        reduced = true
                        break
                    }
                }
            }
            if !reduced {
                if granularity >= current.count { break }
                granularity = min(current.count, granularity * 2)
            }
        }
        if current.count == 1, try test([]) { return [] }
        return current.map { elements[$0] }
    }

    /// `positions` in `parts` consecutive chunks of nearly equal size (the first ones one longer).
    static func split(_ positions: [Int], into parts: Int) -> [[Int]] {
        let parts = max(1, min(parts, positions.count))
        var chunks: [[Int]] = []
        var start = 0
        for part in 0..<parts {
            let size = positions.count / parts + (part < positions.count % parts ? 1 : 0)
            chunks.append(Array(positions[start..<start + size]))
            start += size
        }
        return chunks
    }
}
