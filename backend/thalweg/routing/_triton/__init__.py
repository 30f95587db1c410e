"""Private Triton kernels, one file per kernel family, launched only by the engines."""
