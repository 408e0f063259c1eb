"""The reverse-mode autograd: ``Tensor`` and the backward walk, ``Function`` and ``no_grad``, and the ops.

``tensor.py`` records a tape of ``Function`` nodes as ops run; ``Tensor.backward`` walks it in
reverse. ``ops/`` holds the primitives (element-wise, shape) and the fused transformer ops that
call ``scratchlm.kernels``. Nothing here knows about layers, models or the command line.
"""
