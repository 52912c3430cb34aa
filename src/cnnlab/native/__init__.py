"""Small C kernels for the CPU where torch's own are slow, built on first use (build.py) and
always optional: without a C compiler, or with CNNLAB_NATIVE=0, torch's kernels run instead.

- maxpool2x2: 2x2 / stride-2 max pooling on channels-last bf16/fp32 tensors (MaxPool2D uses it).
"""
