"""The CUDA versions of kernels/ and the engine on a GPU, checked at three depths.

- Everywhere nvcc is: every CUDA source (``*_CUDA_SOURCE``) compiles for float32 and float64
  and defines the kernels its wrappers launch.
- Everywhere g++ (C++20) is: every CUDA version runs on a CPU emulator of CUDA threads
  (tests/cuda_emulator.py) and matches its NumPy reference; the emulator also checks the
  argument types each launch passes.
- On a machine with CuPy and a usable CUDA GPU: the same cases on the GPU, the dispatchers'
  choice, and checkpoints trained on one device generating and evaluating on the other
  (these skip cleanly elsewhere).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import cuda_emulator
import numpy as np
import pytest
from kernel_cases import DISPATCHERS
from train_helpers import TINY, small_text, train_in_process

from scratchlm import backend
from scratchlm.kernels import _cuda, adamw, attention, cross_entropy, dispatch, dropout, embedding, gelu, layernorm, rmsnorm

KERNEL_FILES = [adamw, attention, cross_entropy, dropout, embedding, gelu, layernorm, rmsnorm]
SOURCES = [(m, name) for m in KERNEL_FILES for name in vars(m) if name.endswith("_CUDA_SOURCE")]
DTYPES = [np.float32, np.float64]


@pytest.fixture
def cupy():
    """The cupy module on a machine with a usable CUDA GPU; the test skips elsewhere."""
    pytest.importorskip("cupy")
    if not backend.cuda_available():
        pytest.skip("CuPy is installed but no CUDA GPU is usable")
    return backend.array_module_for("cuda")


# ---- CUDA C compiles (nvcc) and importing never pulls in cupy ---------------------------
def test_every_kernel_file_has_a_cuda_source():
    assert {m.__name__.rsplit(".", 1)[1] for m, _ in SOURCES} == {m.__name__.rsplit(".", 1)[1] for m in KERNEL_FILES}


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("module, name", SOURCES, ids=[name for _, name in SOURCES])
def test_cuda_source_compiles_with_nvcc(tmp_path, module, name, dtype):
    source = getattr(module, name)
    path = tmp_path / "kernel.cu"
    path.write_text(_cuda.full_source(source, dtype))
    run = subprocess.run(["nvcc", "-arch=sm_90", "--ptx", "-Werror", "all-warnings", "-o", str(tmp_path / "kernel.ptx"),
                          str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    entries = set(re.findall(r"\.entry (\w+)\(", (tmp_path / "kernel.ptx").read_text()))
    assert entries == set(re.findall(r'extern "C" __global__ void (\w+)\(', source))


def test_importing_the_kernels_does_not_import_cupy():
    code = ("import sys, scratchlm.model, scratchlm.autograd.ops, scratchlm.optim, scratchlm.kernels.attention, "
            "scratchlm.kernels.adamw; print('cupy' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# ---- the cases: each CUDA version against its reference (inputs moved with xp.asarray) ------
def agree(got, want, dtype, tol):
    """(tuples of) arrays, on any device, against host arrays: same dtype, shape and values."""
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want, strict=True):
        g, w = backend.to_numpy(g), np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, w.dtype, g.shape, w.shape)
        scale = float(np.max(np.abs(w), initial=0.0))
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * scale)


def normal(rng, shape, dtype, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(dtype)


def case_norms(xp, dtype, tol, rng):
    # (520, 5): more rows than backward blocks; (3, 1100): more columns than threads
    for shape in [(1, 3), (5, 13), (3, 1100), (520, 5)]:
        x, dy = normal(rng, shape, dtype, 2.0, 0.5), normal(rng, shape, dtype)
        w, b = normal(rng, shape[1], dtype, 0.3, 1.0), normal(rng, shape[1], dtype)
        on_x, on_dy, on_w, on_b = (xp.asarray(a) for a in (x, dy, w, b))
        y, mean, rstd = layernorm.layernorm_forward_reference(x, w, b)
        agree(layernorm.layernorm_forward_cuda(on_x, on_w, on_b), (y, mean, rstd), dtype, tol)
        agree(layernorm.layernorm_backward_cuda(on_dy, on_x, on_w, xp.asarray(mean), xp.asarray(rstd)),
              layernorm.layernorm_backward_reference(dy, x, w, mean, rstd), dtype, tol)
        y, rstd = rmsnorm.rmsnorm_forward_reference(x, w)
        agree(rmsnorm.rmsnorm_forward_cuda(on_x, on_w), (y, rstd), dtype, tol)
        agree(rmsnorm.rmsnorm_backward_cuda(on_dy, on_x, on_w, xp.asarray(rstd)),
              rmsnorm.rmsnorm_backward_reference(dy, x, w, rstd), dtype, tol)


def case_gelu(xp, dtype, tol, rng):
    for shape in [(1,), (3, 5, 7), (2, 1000)]:
        x, dy = normal(rng, shape, dtype, 3.0), normal(rng, shape, dtype)
        agree(gelu.gelu_forward_cuda(xp.asarray(x)), gelu.gelu_forward_reference(x), dtype, tol)
        agree(gelu.gelu_backward_cuda(xp.asarray(dy), xp.asarray(x)), gelu.gelu_backward_reference(dy, x), dtype, tol)


def case_embedding(xp, dtype, tol, rng):
    for vocab, width, ids_shape, ids_dtype in [(65, 40, (4, 32), np.int64), (7, 13, (3, 5), np.int32),
                                               (1, 5, (2, 3), np.uint16), (5, 1100, (2, 4), np.int64)]:
        weight, dout = normal(rng, (vocab, width), dtype), normal(rng, ids_shape + (width,), dtype)
        ids = rng.integers(0, vocab, size=ids_shape).astype(ids_dtype)                 # repeats in every case
        got = embedding.embedding_forward_cuda(xp.asarray(weight), xp.asarray(ids))
        np.testing.assert_array_equal(backend.to_numpy(got), embedding.embedding_forward_reference(weight, ids))
        # the same additions in the same order as np.add.at: equal to the last bit, every run
        np.testing.assert_array_equal(backend.to_numpy(embedding.embedding_backward_cuda(
            xp.asarray(dout), xp.asarray(ids), vocab)), embedding.embedding_backward_reference(dout, ids, vocab))
    wide = normal(rng, (2, 3, 300), dtype)                                              # 3 column blocks
    wide_ids = np.array([[1, 1, 0], [2, 1, 1]])
    np.testing.assert_array_equal(backend.to_numpy(embedding.embedding_backward_cuda(xp.asarray(wide), xp.asarray(
        wide_ids), 4)), embedding.embedding_backward_reference(wide, wide_ids, 4))
    no_tokens = embedding.embedding_backward_cuda(xp.zeros((0, 3), dtype=dtype), xp.zeros(0, dtype=np.int64), 4)
    np.testing.assert_array_equal(backend.to_numpy(no_tokens), np.zeros((4, 3), dtype=dtype))
    assert embedding.embedding_backward_cuda(xp.ones((2, 3), dtype=dtype), xp.zeros(2, dtype=np.int64), 0).shape == (0, 3)
    wrapped = embedding.embedding_backward_cuda(xp.ones((3, 2), dtype=dtype), xp.asarray(np.array([-1, 5, 7])), 5)
    np.testing.assert_array_equal(backend.to_numpy(wrapped)[:, 0], [1, 0, 1, 0, 1])    # rows 4, 0 and 2
    ones = xp.ones((2, 4, 3), dtype=dtype)
    counts = embedding.embedding_backward_cuda(ones, xp.asarray(np.array([[3, 3, 3, 3], [3, 0, 3, 3]])), 5)
    np.testing.assert_array_equal(backend.to_numpy(counts)[:, 0], [1, 0, 0, 7, 0])      # every repeat adds
    table = normal(rng, (5, 3), dtype)                                                  # out of range: wraps
    np.testing.assert_array_equal(backend.to_numpy(embedding.embedding_forward_cuda(
        xp.asarray(table), xp.asarray(np.array([-1, 5, 7])))), table[[4, 0, 2]])


def case_dropout(xp, dtype, tol, rng):
    # integer hashing and one multiply per survivor: the same bits as the reference on any device
    for shape, p in [((1,), 0.5), ((3, 5, 7), 0.1), ((2, 1000), 0.9)]:
        x, key = normal(rng, shape, dtype), int(rng.integers(2**63))
        np.testing.assert_array_equal(backend.to_numpy(dropout.dropout_cuda(xp.asarray(x), p, key)),
                                      dropout.dropout_reference(x, p, key))


def case_cross_entropy(xp, dtype, tol, rng):
    for rows, vocab in [(1, 1), (1, 65), (37, 5), (3, 1100)]:
        logits = normal(rng, (rows, vocab), dtype, 3.0)
        targets = rng.integers(0, vocab, size=rows)
        targets[1::3] = -1                                                              # ignored rows
        for compute_grad in (True, False):
            want = cross_entropy.cross_entropy_forward_reference(logits, targets, -1, compute_grad)
            got = cross_entropy.cross_entropy_forward_cuda(xp.asarray(logits), xp.asarray(targets), -1, compute_grad)
            agree(got[0], want[0], dtype, tol)
            assert (got[1] is None) == (not compute_grad)
            if compute_grad:
                agree(got[1], want[1], dtype, tol)
    loss, dlogits = cross_entropy.cross_entropy_forward_cuda(xp.asarray(np.arange(12.0, dtype=dtype).reshape(3, 4)),
                                                            xp.asarray(np.full(3, 7)), ignore_index=7)
    assert float(loss) == 0.0 and not backend.to_numpy(dlogits).any()                  # every row ignored
    masked = np.array([[0.0, -np.inf, 2.0], [-np.inf, 1.0, -np.inf]], dtype=dtype)
    agree(cross_entropy.cross_entropy_forward_cuda(xp.asarray(masked), xp.asarray(np.array([2, 1]))),
          cross_entropy.cross_entropy_forward_reference(masked, np.array([2, 1])), dtype, tol)


def case_attention(xp, dtype, tol, rng):
    # (B, H, Tq, Tk, D): one token; Tq < Tk (a KV cache); D odd; decoding one token; Tk > 1024
    for B, H, Tq, Tk, D in [(1, 1, 1, 1, 1), (2, 3, 5, 9, 7), (1, 1, 13, 13, 16), (3, 2, 1, 11, 8),
                            (1, 2, 7, 7, 33), (1, 1, 2, 1030, 4)]:
        q, dout = normal(rng, (B, H, Tq, D), dtype), normal(rng, (B, H, Tq, D), dtype)
        k, v = normal(rng, (B, H, Tk, D), dtype, 2.0), normal(rng, (B, H, Tk, D), dtype)
        out, p = attention.attention_forward_reference(q, k, v)
        got_out, got_p = attention.attention_forward_cuda(*(xp.asarray(a) for a in (q, k, v)))
        agree((got_out, got_p), (out, p), dtype, tol)
        assert np.all(backend.to_numpy(got_p)[..., attention.causal_mask(np, Tq, Tk)] == 0)   # exact zeros
        agree(attention.attention_backward_cuda(*(xp.asarray(a) for a in (dout, q, k, v, p))),
              attention.attention_backward_reference(dout, q, k, v, p), dtype, tol)
    qkv = normal(rng, (2, 9, 3, 4, 8), dtype)                                           # (B, T, 3, H, D)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))                    # views (B, H, T, D)
    views = (xp.asarray(qkv)[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    agree(attention.attention_forward_cuda(*views), attention.attention_forward_reference(q, k, v), dtype, tol)


def case_adamw(xp, dtype, tol, rng):
    hyper = dict(lr=3e-3, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.1)
    for size, num_decayed in [(1, 1), (300, 120), (5_000, 4_000)]:
        start = [normal(rng, size, dtype) for _ in range(2)]                           # params, grads
        results = []
        for step_fn, to in ((adamw.adamw_step_reference, np.asarray), (adamw.adamw_step_cuda, xp.asarray)):
            params, grads = (to(a.copy()) for a in start)
            m, v = to(np.zeros(size, dtype)), to(np.zeros(size, dtype))
            for step in range(1, 6):                                                    # five steps
                step_fn(params, grads, m, v, step, num_decayed=num_decayed, **hyper)
            results.append((params, m, v))
        agree(results[1], results[0], dtype, tol)
        grads = start[1]
        norm = adamw.grad_norm_reference(grads)
        assert adamw.grad_norm_cuda(xp.asarray(grads)) == pytest.approx(norm, rel=tol)
        for max_norm in (0.0, 0.5 * norm, 2.0 * norm):                                  # off, clips, does not
            clipped = xp.asarray(grads.copy())
            want = grads.copy()
            assert float(adamw.clip_grad_norm_cuda(clipped, max_norm)) == pytest.approx(norm, rel=tol)
            assert adamw.clip_grad_norm(want, max_norm) == pytest.approx(norm, rel=tol)    # the CPU's answer
            agree(clipped, want, dtype, tol)


CASES = {"norms": case_norms, "gelu": case_gelu, "embedding": case_embedding, "dropout": case_dropout,
         "cross_entropy": case_cross_entropy,
         "attention": case_attention, "adamw": case_adamw}


@pytest.mark.skipif(not cuda_emulator.available(), reason="needs g++ with C++20 threads for the CUDA emulator")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES)
def test_cuda_versions_on_the_cpu_emulator(case, dtype):
    with cuda_emulator.emulated_cuda():
        CASES[case](np, dtype, {np.float32: 1e-5, np.float64: 1e-12}[dtype], np.random.default_rng(0))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES)
def test_cuda_versions_on_the_gpu(cupy, case, dtype):
    # looser than on the emulator: cuBLAS and fused multiply-adds round differently from NumPy
    CASES[case](cupy, dtype, {np.float32: 1e-4, np.float64: 1e-10}[dtype], np.random.default_rng(0))


# ---- the dispatchers send CuPy arrays to the CUDA versions (the references in reference mode) ----
@pytest.mark.gpu
@pytest.mark.parametrize("module, name, fast_name, make_args", DISPATCHERS, ids=[d[1] for d in DISPATCHERS])
def test_dispatch_sends_cupy_arrays_to_cuda(cupy, monkeypatch, module, name, fast_name, make_args):
    cuda_name = re.sub(r"_v\d$", "_cuda", fast_name)
    calls = []
    cuda_version = getattr(module, cuda_name)
    monkeypatch.setattr(module, cuda_name, lambda *a, **k: calls.append(1) or cuda_version(*a, **k))
    on_gpu = lambda: [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in make_args()]
    previous = dispatch.set_mode("reference")
    try:
        getattr(module, name)(*on_gpu())
        assert calls == []
        dispatch.set_mode("auto")
        getattr(module, name)(*on_gpu())
        assert calls == [1]
    finally:
        dispatch.set_mode(previous)


@pytest.mark.gpu
def test_clipping_on_the_gpu_hands_back_a_device_norm(cupy):
    grads = cupy.full(10, 3.0, dtype=cupy.float32)                  # norm sqrt(90)
    previous = dispatch.set_mode("auto")
    try:
        norm = adamw.clip_grad_norm(grads, 1.0)
    finally:
        dispatch.set_mode(previous)
    assert isinstance(norm, cupy.ndarray) and float(norm) == pytest.approx(90 ** 0.5)   # not read on the host
    assert float(cupy.sqrt((grads * grads).sum())) == pytest.approx(1.0, rel=1e-5)


# ---- a model moves between the devices ---------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_a_model_moves_every_array_and_only_arrays(backend, bias):
    """``Module.to`` moves parameters and buffers; a buffer a layer does without (None) stays None."""
    from scratchlm import backend as engine
    from scratchlm.model import GPT, GPTConfig

    device = "cpu" if backend is np else "cuda"
    model = GPT(GPTConfig(vocab_size=11, d_model=16, n_heads=2, n_layers=1, max_seq_len=8, bias=bias), seed=0)
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    model.to(device)
    for name, p in model.named_parameters():
        assert engine.device_of(p.data) == device, name
        np.testing.assert_array_equal(engine.to_numpy(p.data), before[name], err_msg=name)
    norms = [m for m in model.modules() if hasattr(m, "zero_bias")]
    assert norms and all((m.zero_bias is None) == bias for m in norms)
    assert all(engine.device_of(m.zero_bias) == device for m in norms if m.zero_bias is not None)
    model.to("cpu")
    assert all(isinstance(p.data, np.ndarray) for p in model.parameters())


# ---- checkpoints cross between the GPU and the CPU --------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny float64 run trained on the CPU and on the GPU: {device: final checkpoint}."""
    pytest.importorskip("cupy")
    if not backend.cuda_available():
        pytest.skip("CuPy is installed but no CUDA GPU is usable")
    folder = tmp_path_factory.mktemp("runs")
    data = small_text(folder, 1500)
    finals = {}
    for device in ("cpu", "cuda"):
        train_in_process(["train", data, "--output-dir", folder / device, *TINY, "--epochs", "1", "--max-steps", "6",
                          "--dtype", "float64", "--grad-accum", "2", "--device", device])
        finals[device] = folder / device / "final_model.pt"
    return finals


@pytest.mark.gpu
def test_the_gpu_trains_like_the_cpu_in_float64(runs):
    from train_helpers import checkpoint_arrays

    on_cpu, on_gpu = checkpoint_arrays(runs["cpu"]), checkpoint_arrays(runs["cuda"])
    assert on_cpu.keys() == on_gpu.keys()
    for name in on_cpu:
        np.testing.assert_allclose(on_gpu[name], on_cpu[name], rtol=1e-6, atol=1e-9, err_msg=name)


@pytest.mark.gpu
@pytest.mark.parametrize("trained_on", ["cpu", "cuda"])
def test_checkpoints_generate_and_evaluate_on_either_device(runs, trained_on):
    from scratchlm.checkpoint import load_checkpoint
    from scratchlm.inference.decoder import Decoder
    from scratchlm.inference.sampling import SamplingSettings, generate_text
    from scratchlm.inference.scoring import evaluate_text

    checkpoint = load_checkpoint(runs[trained_on])
    text = small_text(runs[trained_on].parent, 400, "eval.txt").read_text(encoding="utf-8")
    results = {}
    for device in ("cpu", "cuda"):
        model = checkpoint.build_model(device)
        assert backend.device_of(model.wte.weight.data) == device
        evaluation = evaluate_text(model, checkpoint.tokenizer, text, stride=8)
        samples = ["".join(generate_text(Decoder(model), checkpoint.tokenizer, "Th", settings, np.random.default_rng(3)))
                   for settings in (SamplingSettings(max_tokens=40, temperature=0.0),
                                    SamplingSettings(max_tokens=40, temperature=0.8, seed=3))]
        results[device] = evaluation, samples
    (cpu_eval, cpu_samples), (gpu_eval, gpu_samples) = results["cpu"], results["cuda"]
    assert gpu_eval.loss == pytest.approx(cpu_eval.loss, rel=1e-9)
    assert gpu_eval.accuracy == cpu_eval.accuracy
    assert gpu_samples == cpu_samples and all(len(s) > 0 for s in cpu_samples)
