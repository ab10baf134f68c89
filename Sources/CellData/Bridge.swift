import TensorCore

extension CellShard {
    /// The local rows as TensorCore's CSR matrix (localRows × nVars; same arrays, validated).
    public func localMatrix() throws -> CSRMatrix {
        try CSRMatrix(rows: localRows, cols: nVars, rowPtr: rowPtr, colIdx: colIdx, values: values)
    }

    /// The dense local rows as a Tensor (localRows × nVars); for HVG-sized matrices.
    public func denseTensor() -> Tensor {
        Tensor(rows: localRows, cols: nVars, values: denseRows())
    }
}
