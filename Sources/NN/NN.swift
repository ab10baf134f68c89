// Layers, optimisers and the flat parameter store (issue 3).
