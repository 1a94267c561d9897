"""Using a GPU: check what ``--gpu-id N`` needs before spaCy tries, and measure its memory.

thinc runs on the GPU through CuPy (its kernels are compiled with the CuPy that
matches the driver's CUDA major version) and the transformer through PyTorch.
A missing piece is one actionable line, not a traceback from deep in thinc.
"""
from typing import Optional

from .errors import GPUUnavailableError

EXTRAS_HINT = (
    "install the extra that matches your NVIDIA driver's CUDA major version (`nvidia-smi` shows it): "
    "pip install 'spacy-bioner[gpu-cuda12]' or 'spacy-bioner[gpu-cuda13]', plus a CUDA build of torch "
    "(docs/gpu.md)"
)


def gpu_problem(gpu_id: int, *, need_torch: bool = True) -> Optional[str]:
    """Why GPU ``gpu_id`` cannot be used here, or None when it can.

    gpu_id (int): the device index (negative: CPU, never a problem).
    need_torch (bool): the pipeline has a transformer, so torch must see the GPU too.
    """
    if gpu_id < 0:
        return None
    from thinc import compat

    if not compat.has_cupy:
        return f"--gpu-id {gpu_id}: CuPy is not installed, so spaCy cannot use a GPU; {EXTRAS_HINT}"
    if not compat.has_cupy_gpu:
        return (f"--gpu-id {gpu_id}: CuPy is installed but sees no CUDA GPU (no NVIDIA driver, CUDA_VISIBLE_DEVICES "
                f"hides it, or the CuPy build does not match the driver's CUDA); {EXTRAS_HINT}")
    if need_torch and not compat.has_torch_cuda_gpu:
        return (f"--gpu-id {gpu_id}: torch is a CPU-only build (or sees no GPU); install a CUDA build of torch, "
                "e.g. pip install torch --index-url https://download.pytorch.org/whl/cu126")
    import cupy

    count = cupy.cuda.runtime.getDeviceCount()
    if gpu_id >= count:
        return f"--gpu-id {gpu_id}: only {count} GPU(s) visible (ids 0–{count - 1})"
    return None


def require_gpu(gpu_id: int, *, need_torch: bool = True) -> None:
    """Switch spaCy/thinc to GPU ``gpu_id`` (no-op for a negative id), or raise one clear error.

    gpu_id (int): the device index, -1 for CPU.
    need_torch (bool): the pipeline has a transformer (torch must see the GPU).
    """
    problem = gpu_problem(gpu_id, need_torch=need_torch)
    if problem:
        raise GPUUnavailableError(problem)
    if gpu_id >= 0:
        import spacy

        spacy.require_gpu(gpu_id)


def reset_peak_gpu_memory(gpu_id: int) -> None:
    """Start counting peak GPU memory afresh (no-op on CPU)."""
    if gpu_id >= 0:
        from thinc.compat import has_torch_cuda_gpu

        if has_torch_cuda_gpu:
            import torch

            torch.cuda.reset_peak_memory_stats(gpu_id)


def peak_gpu_memory_mib(gpu_id: int) -> Optional[float]:
    """Peak memory allocated by torch on the GPU since the last reset, in MiB (None on CPU)."""
    if gpu_id < 0:
        return None
    from thinc.compat import has_torch_cuda_gpu

    if not has_torch_cuda_gpu:  # CuPy alone (tok2vec): its pool's current size is the best we have
        import cupy

        return cupy.get_default_memory_pool().total_bytes() / 2**20
    import torch

    return torch.cuda.max_memory_allocated(gpu_id) / 2**20
