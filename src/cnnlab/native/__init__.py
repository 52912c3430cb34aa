"""Small kernels of cnnlab's own where torch's are slow, always optional: without a C compiler (the
CPU kernels, built on first use by build.py), without Triton (the CUDA one), or with
CNNLAB_NATIVE=0, torch's kernels run instead.

- maxpool2x2: 2x2 / stride-2 max pooling on channels-last bf16/fp32 CPU tensors (MaxPool2D uses it).
- conv1pool: a grayscale CNN's first conv + ReLU + 2x2 max pool in one CPU pass (Sequential uses it).
- maxpool2x2_cuda: the same pooling as Triton kernels on CUDA, while cnnlab records a CUDA graph.
"""
