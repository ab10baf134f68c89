// Reverse-mode automatic differentiation over TensorCore (issue 3).
