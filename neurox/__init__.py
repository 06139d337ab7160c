"""NeuroX: a living neural network of supervised OS processes."""
