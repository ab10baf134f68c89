import Collectives

/// The uneven split the multi-rank checks use: rank r holds a share of the n rows proportional to r + 1
/// (floored; the last rank takes the remainder), so no rank count divides the rows evenly by accident.
func unevenLayout(_ n: Int, ranks p: Int) -> RowLayout {
    let weight = p * (p + 1) / 2
    var counts = (0..<p).map { n * ($0 + 1) / weight }
    counts[p - 1] += n - counts.reduce(0, +)
    return RowLayout(counts: counts)
}
