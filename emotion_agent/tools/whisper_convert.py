"""Convert a CTranslate2 Whisper model (faster-whisper format) to an openai-whisper ``.pt`` checkpoint.

The only Whisper weights available offline here are CT2 folders (see :mod:`tools.audio_assets`);
openai-whisper loads only its own ``.pt`` format (``{"dims": ..., "model_state_dict": ...}``). CT2's
``model.bin`` is a simple binary (spec version 6): a header, then named variables (shape, dtype, raw
bytes), then aliases. This module parses it with numpy and renames the variables, splitting CT2's fused
attention projections (self-attention QKV, cross-attention KV) back into openai-whisper's separate
``query``/``key``/``value`` (Whisper's key projection has no bias; CT2 stores zeros there).

Usage::

    python -m emotion_agent.tools.whisper_convert <ct2 folder or registry name> out.pt

:func:`converted_checkpoint` does it once per model into ``<cache>/models/<name>-openai/model.pt``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
from pathlib import Path

import numpy as np

from emotion_agent.tools.settings import Settings

# CT2 DataType ids (ctranslate2/types.h): FLOAT32, INT8, INT16, INT32, FLOAT16, BFLOAT16
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class ConversionError(RuntimeError):
    """A CT2 Whisper model cannot be converted; the message says why."""
    pass


def read_ct2(path: Path | str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse a CT2 ``model.bin``: (variables, aliases)."""
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str) -> tuple:
        """Unpack ``fmt`` at the read position and move past it."""
        nonlocal pos
        size = struct.calcsize(fmt)
        out = struct.unpack_from(fmt, data, pos)
        pos += size
        return out

    def string() -> str:
        """Read a length-prefixed, NUL-terminated UTF-8 string."""
        nonlocal pos
        (n,) = take("<H")
        s = data[pos:pos + n - 1].decode("utf-8")
        pos += n
        return s

    (version,) = take("<I")
    if version < 5:
        raise ConversionError(f"{path}: CT2 binary version {version} is not supported (need ≥ 5)")
    spec_name = string()
    take("<I")  # spec revision
    if spec_name != "WhisperSpec":
        raise ConversionError(f"{path}: not a Whisper model (spec {spec_name!r})")
    (count,) = take("<I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = string()
        (ndim,) = take("<B")
        shape = take(f"<{ndim}I") if ndim else ()
        (dtype_id,) = take("<B")
        (nbytes,) = take("<I")
        if dtype_id not in _DTYPES:
            raise ConversionError(f"{path}: variable {name} has unsupported dtype id {dtype_id} "
                                  "(bfloat16 models: re-export as float16/float32)")
        arr = np.frombuffer(data, dtype=_DTYPES[dtype_id], count=nbytes // np.dtype(_DTYPES[dtype_id]).itemsize,
                            offset=pos).reshape(shape)
        pos += nbytes
        variables[name] = arr
    aliases: dict[str, str] = {}
    if pos < len(data):
        (n_alias,) = take("<I")
        for _ in range(n_alias):
            alias = string()
            aliases[alias] = string()
    if any(name.endswith("weight_scale") for name in variables):
        raise ConversionError(f"{path}: int8-quantized CT2 weights cannot be converted; use a float16/32 export")
    return variables, aliases


def ct2_to_state_dict(variables: dict[str, np.ndarray]) -> tuple[dict, dict[str, np.ndarray]]:
    """Return (openai-whisper ModelDimensions as dict, state dict of numpy arrays)."""
    v = variables
    n_audio_layer = len({m.group(1) for k in v if (m := re.match(r"encoder/layer_(\d+)/", k))})
    n_text_layer = len({m.group(1) for k in v if (m := re.match(r"decoder/layer_(\d+)/", k))})
    n_audio_state = v["encoder/conv1/weight"].shape[0]
    n_text_state = v["decoder/embeddings/weight"].shape[1]
    dims = {
        "n_mels": int(v["encoder/conv1/weight"].shape[1]),
        "n_audio_ctx": int(v["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": int(n_audio_state),
        "n_audio_head": int(v["encoder/num_heads"]),
        "n_audio_layer": n_audio_layer,
        "n_vocab": int(v["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(v["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(n_text_state),
        "n_text_head": int(v["decoder/num_heads"]),
        "n_text_layer": n_text_layer,
    }
    sd: dict[str, np.ndarray] = {}

    def ln(dst: str, src: str) -> None:
        """Copy a CT2 layer norm (gamma, beta) to ``dst.weight`` and ``dst.bias``."""
        sd[f"{dst}.weight"] = v[f"{src}/gamma"]
        sd[f"{dst}.bias"] = v[f"{src}/beta"]

    def lin(dst: str, src: str, rows: slice | None = None, bias: bool = True) -> None:
        """Copy a CT2 linear layer (optionally only ``rows``, optionally no bias) to ``dst``."""
        w = v[f"{src}/weight"]
        b = v[f"{src}/bias"]
        sd[f"{dst}.weight"] = w if rows is None else w[rows]
        if bias:
            sd[f"{dst}.bias"] = b if rows is None else b[rows]

    def split_qkv(prefix: str, src: str, d: int) -> None:
        """Split a fused self-attention QKV projection into query, key (no bias), value."""
        lin(f"{prefix}.query", src, slice(0, d))
        lin(f"{prefix}.key", src, slice(d, 2 * d), bias=False)
        lin(f"{prefix}.value", src, slice(2 * d, 3 * d))

    def split_kv(prefix: str, src: str, d: int) -> None:
        """Split a fused cross-attention KV projection into key (no bias) and value."""
        lin(f"{prefix}.key", src, slice(0, d), bias=False)
        lin(f"{prefix}.value", src, slice(d, 2 * d))

    for name in ("conv1", "conv2"):
        sd[f"encoder.{name}.weight"] = v[f"encoder/{name}/weight"]
        sd[f"encoder.{name}.bias"] = v[f"encoder/{name}/bias"]
    sd["encoder.positional_embedding"] = v["encoder/position_encodings/encodings"]
    d = n_audio_state
    for i in range(n_audio_layer):
        s, t = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        ln(f"{t}.attn_ln", f"{s}/self_attention/layer_norm")
        split_qkv(f"{t}.attn", f"{s}/self_attention/linear_0", d)
        lin(f"{t}.attn.out", f"{s}/self_attention/linear_1")
        ln(f"{t}.mlp_ln", f"{s}/ffn/layer_norm")
        lin(f"{t}.mlp.0", f"{s}/ffn/linear_0")
        lin(f"{t}.mlp.2", f"{s}/ffn/linear_1")
    ln("encoder.ln_post", "encoder/layer_norm")

    sd["decoder.token_embedding.weight"] = v["decoder/embeddings/weight"]
    sd["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"]
    d = n_text_state
    for i in range(n_text_layer):
        s, t = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        ln(f"{t}.attn_ln", f"{s}/self_attention/layer_norm")
        split_qkv(f"{t}.attn", f"{s}/self_attention/linear_0", d)
        lin(f"{t}.attn.out", f"{s}/self_attention/linear_1")
        ln(f"{t}.cross_attn_ln", f"{s}/attention/layer_norm")
        lin(f"{t}.cross_attn.query", f"{s}/attention/linear_0")
        split_kv(f"{t}.cross_attn", f"{s}/attention/linear_1", d)
        lin(f"{t}.cross_attn.out", f"{s}/attention/linear_2")
        ln(f"{t}.mlp_ln", f"{s}/ffn/layer_norm")
        lin(f"{t}.mlp.0", f"{s}/ffn/linear_0")
        lin(f"{t}.mlp.2", f"{s}/ffn/linear_1")
    ln("decoder.ln", "decoder/layer_norm")
    return dims, sd


def convert(ct2_dir: Path | str, out_path: Path | str) -> Path:
    """Write an openai-whisper checkpoint converted from CT2 folder ``ct2_dir`` (float16 weights)."""
    import torch

    ct2_dir = Path(ct2_dir)
    model_bin = ct2_dir / "model.bin"
    if not model_bin.is_file():
        raise ConversionError(f"{ct2_dir} has no model.bin (not a CTranslate2 Whisper folder)")
    variables, _ = read_ct2(model_bin)
    dims, sd = ct2_to_state_dict(variables)
    state = {k: torch.from_numpy(np.array(a, copy=True)).to(torch.float16) for k, a in sd.items()}
    ckpt: dict = {"dims": dims, "model_state_dict": state}
    cfg = ct2_dir / "config.json"
    if cfg.is_file():
        heads = json.loads(cfg.read_text()).get("alignment_heads")
        if heads:
            ckpt["alignment_heads_list"] = [[int(a), int(b)] for a, b in heads]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + f".tmp{os.getpid()}")
    torch.save(ckpt, tmp)
    os.replace(tmp, out_path)
    return out_path


def converted_checkpoint(spec: str, settings: Settings | None = None) -> Path:
    """``.pt`` for ``spec``: a user ``.pt`` is returned as is; a registry name / CT2 folder is converted once."""
    from emotion_agent.tools.audio_assets import resolve_whisper

    settings = settings or Settings.from_env()
    p = Path(spec).expanduser()
    if p.suffix == ".pt":
        if not p.is_file():
            raise ConversionError(f"openai-whisper checkpoint {p} not found")
        return p
    ct2_dir = Path(resolve_whisper(spec, settings))
    if not ct2_dir.is_dir():
        raise ConversionError(f"'{spec}' is neither a registry Whisper model, a CT2 folder nor a .pt file")
    name = spec if not p.exists() else f"{ct2_dir.name}-{abs(hash(str(ct2_dir.resolve()))) % 10**8}"
    out = settings.models_dir / f"{name}-openai" / "model.pt"
    src = ct2_dir / "model.bin"
    stamp = out.with_suffix(".source.json")
    want = {"source": str(src.resolve()), "size": src.stat().st_size, "mtime_ns": src.stat().st_mtime_ns}
    if out.is_file() and stamp.is_file():
        try:
            if json.loads(stamp.read_text()) == want:
                return out
        except (OSError, ValueError):
            pass
    convert(ct2_dir, out)
    stamp.write_text(json.dumps(want))
    return out


def load_openai_whisper(pt_path: Path | str, device: str = "cpu"):
    """Load a ``.pt`` (ours or OpenAI's) into ``whisper.model.Whisper``; sets alignment heads when known."""
    import torch
    import whisper
    from whisper.model import ModelDimensions, Whisper

    ckpt = torch.load(str(pt_path), map_location=device, weights_only=True)
    model = Whisper(ModelDimensions(**ckpt["dims"]))
    model.load_state_dict({k: t.float() for k, t in ckpt["model_state_dict"].items()})
    heads = ckpt.get("alignment_heads_list")
    if heads:
        mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
        for layer, head in heads:
            mask[layer, head] = True
        model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    del whisper
    return model.to(device).eval()


def main(argv: list[str] | None = None) -> None:
    """CLI: convert a CT2 Whisper folder or registry model to an openai-whisper ``.pt``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source", help="CT2 Whisper folder or registry name (whisper-tiny.en, whisper-base)")
    ap.add_argument("out", help="output .pt path")
    args = ap.parse_args(argv)
    from emotion_agent.tools.audio_assets import resolve_whisper

    path = convert(resolve_whisper(args.source), args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
