import KilnBackend
import Foundation

/// How a list-append workload picks the key of each micro-operation among `0..<keys`: uniformly, or skewed so that a
/// few hot keys take most operations (more contention, longer lists on them) — Elle's `:key-dist`.
public enum ListAppendKeyChoice: Sendable, Equatable {
    case uniform
    /// P(k) ∝ e^(-rate·k): key 0 is the hottest, each next key `e^-rate` times as likely.
    case exponential(rate: Double)
    /// P(k) ∝ (k + 1)^-exponent.
    case zipf(exponent: Double)

    /// `uniform`, `exponential`, `exponential:RATE`, `zipf` or `zipf:EXPONENT` (defaults: rate 0.5, exponent 1).
    public init?(_ text: String) {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        let parameter = parts.count == 2 ? Double(parts[1]) : nil
        if parts.count == 2, parameter == nil || parameter! <= 0 { return nil }
        switch parts.first {
        case "uniform" where parts.count == 1: self = .uniform
        case "exponential": self = .exponential(rate: parameter ?? 0.5)
        case "zipf": self = .zipf(exponent: parameter ?? 1)
        default: return nil
        }
    }

    /// The picker for `keys` keys.
    public func picker(keys: Int) -> KeyPicker { KeyPicker(self, keys: keys) }

    /// Picks a key from one uniform 64-bit draw: modulo for `uniform`, a binary search in the cumulative weights
    /// otherwise. Guaranteed: every result is in `0..<keys`; equal draws give equal keys.
    public struct KeyPicker: Sendable {
        let keys: Int
        /// Cumulative probabilities, last exactly 1; empty for `uniform`.
        let cumulative: [Double]

        init(_ choice: ListAppendKeyChoice, keys: Int) {
            self.keys = max(keys, 1)
            let weights: [Double]
            switch choice {
            case .uniform: weights = []
            case .exponential(let rate): weights = (0..<self.keys).map { exp(-rate * Double($0)) }
            case .zipf(let exponent): weights = (0..<self.keys).map { pow(Double($0 + 1), -exponent) }
            }
            let total = weights.reduce(0, +)
            var running = 0.0
            var cumulative = weights.map { weight -> Double in
                running += weight
                return running / total
            }
            if !cumulative.isEmpty { cumulative[cumulative.count - 1] = 1 }
            self.cumulative = cumulative
        }

        public func key(_ draw: UInt64) -> Int {
            if cumulative.isEmpty { return Int(draw % UInt64(keys)) }
            let unit = Double(draw >> 11) / Double(1 << 53)
            var low = 0
            var high = cumulative.count - 1
            while low < high {
                let middle = (low + high) / 2
                if unit < cumulative[middle] { high = middle } else { low = middle + 1 }
            }
            return low
        }
    }
}
