/// SplitMix64: a tiny seeded generator used where every rank must draw the same numbers
/// (shared decisions such as k-means++ candidates and silhouette samples).
struct SharedRandom {
    private var state: UInt64
    /// Streams are decorrelated by hashing (seed, stream) into the start state: with a plain offset,
    /// stream r would be stream 0 shifted by r draws (restarts would share their random choices).
    init(seed: UInt64, stream: UInt64 = 0) {
        state = SharedRandom.hash(seed ^ SharedRandom.hash(stream &+ 0x5851_F42D_4C95_7F2D))
    }

    static func hash(_ v: UInt64) -> UInt64 {
        var z = v &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    mutating func uniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }
    /// Uniform integer in 0..<n.
    mutating func below(_ n: Int) -> Int { Int(uniform() * Double(n)) % max(n, 1) }
}
