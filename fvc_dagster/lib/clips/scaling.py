"""Stage 3: scale every clip so its larger side is `TARGET_SIZE`, aspect ratio kept.

The scaled picture sits centred in a black `target x target` canvas (letterbox / pillarbox
bars). Two scalers fill that canvas:

* `letterbox`: plain OpenCV resampling (INTER_AREA down, INTER_CUBIC up);
* `VaeScaler`: the picture resized to the content box (sides rounded down to multiples of 8)
  and passed through a diffusers `AutoencoderKL` (encode with the posterior mode, decode), so
  every clip - real or fake - carries the same autoencoder fingerprint.

When the VAE runs out of memory on a clip, that clip (only) falls back to `letterbox`; the
result says so in `method` and `fallback_reason`. Nothing else is ever swapped silently.

torch and diffusers are imported lazily: `letterbox` needs neither.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fvc_dagster.lib.frames import check_clip, resize_frames

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

TARGET_SIZE = 256
DEFAULT_VAE_ID = "stabilityai/sd-vae-ft-mse"
VAE_MULTIPLE = 8
_WEIGHT_PREFIX = "diffusion_pytorch_model"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")


@dataclass(frozen=True)
class ScaledClip:
    """A clip scaled into a black square canvas."""

    frames: np.ndarray  # (K, target, target, 3) uint8: letterboxed square canvas
    method: str  # the method actually used: "letterbox" or "vae"
    original_size: tuple[int, int]  # (width, height) of the input frames
    content_box: tuple[int, int, int, int]  # (x, y, w, h) of the picture inside the canvas
    fallback_reason: str | None = None  # why the VAE was not used, when it was asked for


class VaeWeightsMissing(FileNotFoundError):
    """The AutoencoderKL weights are neither in the given directory nor in the local HF cache."""


def content_size(width: int, height: int, target: int = TARGET_SIZE) -> tuple[int, int]:
    """(w, h) with max(w, h) == target and the aspect ratio kept (rounded half up, each >= 1).

    Small inputs are upscaled too: (100, 50) -> (256, 128).
    """
    width, height, target = int(width), int(height), int(target)
    if width < 1 or height < 1:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if target < 1:
        raise ValueError(f"target must be positive, got {target}")
    longest = max(width, height)
    # Integer rounding (half up) so the result never depends on float representation.
    w = max(1, (width * target + longest // 2) // longest)
    h = max(1, (height * target + longest // 2) // longest)
    return w, h


def _centred_box(w: int, h: int, target: int) -> tuple[int, int, int, int]:
    return (target - w) // 2, (target - h) // 2, w, h


def _place(frames: np.ndarray, box: tuple[int, int, int, int], target: int) -> np.ndarray:
    x, y, w, h = box
    canvas = np.zeros((frames.shape[0], target, target, 3), np.uint8)
    canvas[:, y : y + h, x : x + w] = frames
    return canvas


def letterbox(clip: np.ndarray, target: int = TARGET_SIZE) -> ScaledClip:
    """The clip resized (aspect kept) into the centred content box of a black square canvas."""
    _, height, width = check_clip(clip)
    w, h = content_size(width, height, target)
    box = _centred_box(w, h, target)
    frames = _place(resize_frames(clip, w, h), box, target)
    return ScaledClip(frames, "letterbox", (width, height), box, None)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's out-of-memory errors (CUDA or otherwise) and RuntimeErrors saying so."""
    import torch

    oom_types = tuple(
        t
        for t in (getattr(torch, "OutOfMemoryError", None), torch.cuda.OutOfMemoryError)
        if isinstance(t, type)
    )
    if oom_types and isinstance(exc, oom_types):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def vae_content_size(width: int, height: int, target: int = TARGET_SIZE) -> tuple[int, int]:
    """`content_size` with each side rounded down to a multiple of 8 (at least 8)."""
    w, h = content_size(width, height, target)
    return (
        max(VAE_MULTIPLE, w // VAE_MULTIPLE * VAE_MULTIPLE),
        max(VAE_MULTIPLE, h // VAE_MULTIPLE * VAE_MULTIPLE),
    )


def _hf_hub_cache() -> Path:
    """The hub cache huggingface_hub would use, read from the environment *now*.

    huggingface_hub reads HF_HOME / HF_HUB_CACHE once at import; reading them here lets a
    process (or a test) point the lookup elsewhere after import.
    """
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME")
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
        home = str(Path(xdg) / "huggingface")
    return Path(home).expanduser() / "hub"


def _weights_variant(folder: Path) -> str | None | bool:
    """None when `folder` holds plain weights, "fp16" when only fp16 ones, False when none."""
    if any((folder / f"{_WEIGHT_PREFIX}{s}").is_file() for s in _WEIGHT_SUFFIXES):
        return None
    if any((folder / f"{_WEIGHT_PREFIX}.fp16{s}").is_file() for s in _WEIGHT_SUFFIXES):
        return "fp16"
    return False


def _missing_in_directory(path: Path, cache_id: str, detail: str) -> VaeWeightsMissing:
    return VaeWeightsMissing(
        f"AutoencoderKL weights not found in {path} ({detail}): put a saved AutoencoderKL there "
        f"(config.json + {_WEIGHT_PREFIX}.safetensors, e.g. from "
        f"`AutoencoderKL.from_pretrained('{cache_id}').save_pretrained('{path}')` on a machine "
        f"with hub access), or a full Stable Diffusion folder with the VAE in {path / 'vae'}/"
    )


def _missing_in_cache(cache_id: str, cache: Path, detail: str) -> VaeWeightsMissing:
    return VaeWeightsMissing(
        f"AutoencoderKL '{cache_id}' not found in the Hugging Face cache {cache} (local files "
        f"only, nothing is downloaded; {detail}): on a machine with hub access run "
        f"`HF_HUB_CACHE={cache} huggingface-cli download {cache_id}` (or "
        f"`AutoencoderKL.from_pretrained('{cache_id}')` with HF_HOME set) and copy that cache "
        f"here, set HF_HOME / HF_HUB_CACHE to where it already is, or pass a directory holding "
        f"a saved AutoencoderKL (config.json + {_WEIGHT_PREFIX}.safetensors)"
    )


class VaeScaler:
    """Scales with a diffusers AutoencoderKL: the content is resized to the content box (rounded
    to multiples of 8), encoded and decoded in batches, and placed in the letterbox canvas."""

    def __init__(self, vae: Any, device: str = "cpu", batch_size: int = 8):
        import torch

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.batch_size = int(batch_size)
        vae = vae.to(self.device)
        vae = vae.half() if self.dtype == torch.float16 else vae.float()
        vae.eval()
        self.vae = vae

    @classmethod
    def from_directory(
        cls,
        path: str | Path | None,
        device: str | None = None,
        batch_size: int = 8,
        cache_id: str = DEFAULT_VAE_ID,
    ) -> VaeScaler:
        """Load AutoencoderKL weights from a local folder, or (path None) the local HF cache.

        `path` may hold a saved AutoencoderKL (config.json + weights) or a full Stable Diffusion
        folder with the VAE in `vae/`. Nothing is ever downloaded. Raises `VaeWeightsMissing`
        saying what to put where when the weights are absent.
        """
        import torch
        from diffusers import AutoencoderKL

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if path is None:
            vae = _load_from_cache(AutoencoderKL, cache_id)
        else:
            vae = _load_from_directory(AutoencoderKL, Path(path), cache_id)
        return cls(vae, device=device, batch_size=batch_size)

    def scale(self, clip: np.ndarray, target: int = TARGET_SIZE) -> ScaledClip:
        """The clip through the VAE into the letterbox canvas (method "vae").

        On out-of-memory the clip is letterboxed instead (method "letterbox", fallback_reason
        set); any other error propagates.
        """
        _, height, width = check_clip(clip)
        w, h = vae_content_size(width, height, target)
        box = _centred_box(w, h, target)
        resized = resize_frames(clip, w, h)
        reason = None
        try:
            decoded = self._roundtrip(resized)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            reason = f"vae out of memory: {first_line}"
        if reason is not None:
            # Outside the except block, so the traceback (and the tensors its frames hold)
            # is already released when the cache is emptied.
            self._free_memory()
            log.warning("%s; letterboxing this %dx%d clip instead", reason, width, height)
            return replace(letterbox(clip, target), fallback_reason=reason)
        return ScaledClip(_place(decoded, box, target), "vae", (width, height), box, None)

    def _roundtrip(self, frames: np.ndarray) -> np.ndarray:
        """(K, h, w, 3) uint8 -> encode (posterior mode) -> decode -> (K, h, w, 3) uint8."""
        import torch

        out = np.empty_like(frames)
        with torch.inference_mode():
            for start in range(0, len(frames), self.batch_size):
                batch = frames[start : start + self.batch_size]
                x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2)
                x = x.to(self.dtype).div_(127.5).sub_(1.0)
                latents = self.vae.encode(x).latent_dist.mode()
                y = self.vae.decode(latents).sample
                if y.shape != x.shape:
                    raise RuntimeError(f"VAE decoded {tuple(y.shape)} from {tuple(x.shape)}")
                if not bool(torch.isfinite(y).all()):
                    raise FloatingPointError(
                        f"VAE produced non-finite values in {self.dtype} on {self.device}"
                    )
                y = _to_uint8(y)
                out[start : start + len(batch)] = y.permute(0, 2, 3, 1).cpu().numpy()
        return out

    def _free_memory(self) -> None:
        import torch

        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()


def _to_uint8(y: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> rounded uint8, computed in fp32."""
    import torch

    return y.float().clamp_(-1.0, 1.0).add_(1.0).mul_(127.5).round_().to(torch.uint8)


def _load_from_directory(autoencoder_cls: Any, path: Path, cache_id: str) -> Any:
    if not path.is_dir():
        raise _missing_in_directory(path, cache_id, "no such directory")
    for folder, subfolder in ((path, None), (path / "vae", "vae")):
        if (folder / "config.json").is_file():
            variant = _weights_variant(folder)
            if variant is False:
                raise _missing_in_directory(
                    path, cache_id, f"{folder / 'config.json'} has no {_WEIGHT_PREFIX}.* beside it"
                )
            return autoencoder_cls.from_pretrained(
                str(path), subfolder=subfolder, variant=variant, low_cpu_mem_usage=False
            )
    raise _missing_in_directory(path, cache_id, "no config.json there nor in vae/")


def _load_from_cache(autoencoder_cls: Any, cache_id: str) -> Any:
    cache = _hf_hub_cache()
    errors = []
    # A VAE repo keeps the model at its root, a full Stable Diffusion repo under vae/.
    for subfolder in (None, "vae"):
        try:
            with warnings.catch_warnings():
                # diffusers still passes this deprecated argument on to huggingface_hub.
                warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
                return autoencoder_cls.from_pretrained(
                    cache_id,
                    subfolder=subfolder,
                    cache_dir=str(cache),
                    local_files_only=True,
                    low_cpu_mem_usage=False,
                )
        except OSError as exc:  # diffusers reports files absent from the cache as OSError
            errors.append(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
    raise _missing_in_cache(cache_id, cache, "; ".join(errors))
