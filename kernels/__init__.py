"""scratchlm.kernels: the hot kernels of a transformer, one file per family, each a lesson.

Read them in this order (see README.md): embedding, layernorm, rmsnorm, gelu, vector_exp,
attention, attention_packed (what training runs on the CPU) with blas (BLAS called from
compiled loops), cross_entropy, adamw with buffers (whole-buffer passes), matmul (teaching only), decode (the generation
step) and bf16 (the format, and the bf16 products of --precision bf16). Every file has the math in its
docstring, a NumPy reference that also runs on CuPy arrays, faster versions checked
against it (Numba for NumPy arrays, CUDA C through CuPy for GPU arrays), and a
``dispatch`` that the engine calls.

Importing this package imports neither Numba nor CuPy: kernels compile on first use.
"""
