"""A tiny, randomly initialised Stable Diffusion 1.x model folder for tests and CPU smoke runs.

It has the layout of a real SD 1.x repository (``vae/``, ``unet/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/`` and ``model_index.json``), so every code path that takes a base model
(training, generation) runs on it offline, in seconds. Its outputs are noise: it checks plumbing,
not image quality.

    python -m cai.cdm.tiny /tmp/tiny-sd [--inpainting]
"""
from __future__ import annotations

import argparse
import json
import string
from pathlib import Path

#: words the tiny tokenizer knows as single tokens (besides single characters)
TINY_WORDS = ("a", "an", "the", "of", "with", "on", "photo", "close", "up", "image", "surface", "industrial",
              "defect", "crack", "stain", "scratch", "hole", "fabric", "pavement", "grid", "texture")


def _bpe(pieces: list[str], ranks: dict) -> list[str]:
    """Byte-pair encoding of one word's pieces: merge the lowest-ranked adjacent pair until none applies."""
    while len(pieces) > 1:
        pairs = [(ranks.get((a, b)), i) for i, (a, b) in enumerate(zip(pieces, pieces[1:]))]
        ranked = [(r, i) for r, i in pairs if r is not None]
        if not ranked:
            break
        _, i = min(ranked)
        pieces = pieces[:i] + [pieces[i] + pieces[i + 1]] + pieces[i + 2:]
    return pieces


def tiny_tokenizer_files(folder, words=TINY_WORDS, model_max_length: int = 32) -> Path:
    """Write ``vocab.json``, ``merges.txt`` and ``tokenizer_config.json`` of a byte-level BPE
    tokenizer in the CLIP format that knows each of ``words`` as one token.

    Every lower-case ASCII letter, digit and punctuation sign is a token (alone and word-final,
    ``"x</w>"``); each word adds the merges that join the pieces the earlier merges leave of it, and
    every merged piece is in the vocabulary, so any lower-case ASCII text tokenises without unknown
    pieces.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))
    vocab: dict[str, int] = {}
    for suffix in ("", "</w>"):
        for c in chars:
            vocab.setdefault(c + suffix, len(vocab))
    merges: list[str] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        # BPE with the merges so far, then merges (ranked after all others, so no earlier word changes)
        # joining whatever pieces are left, left to right
        pieces = _bpe(list(word[:-1]) + [word[-1] + "</w>"], ranks)
        current = pieces[0]
        for piece in pieces[1:]:
            ranks[(current, piece)] = len(merges)
            merges.append(f"{current} {piece}")
            current += piece
            vocab.setdefault(current, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=0))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": model_max_length,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>"}, indent=2))
    return folder


def build_tiny_sd(out, inpainting: bool = False, seed: int = 0, model_max_length: int = 32):
    """Save a tiny random Stable Diffusion 1.x model to ``out`` and return the folder.

    UNet: 2 blocks (32, 64 channels), cross-attention dim 32, 4 input channels (9 with
    ``inpainting``: latents + mask + masked-image latents, as SD inpainting models); VAE: 2 blocks
    (latents at 1/2 of the image size, 4 channels); CLIP text encoder: 2 layers, width 32;
    DDPM scheduler with SD's scaled-linear betas.
    """
    import torch
    from diffusers import (AutoencoderKL, DDPMScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    out = Path(out)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=9 if inpainting else 4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, attention_head_dim=4,
        norm_num_groups=32)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), norm_num_groups=32, sample_size=32)
    tokenizer = CLIPTokenizer.from_pretrained(str(tiny_tokenizer_files(out / "_tokenizer_src",
                                                                        model_max_length=model_max_length)))
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=model_max_length, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, projection_dim=32))
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", clip_sample=False, steps_offset=1)
    pipeline_class = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    pipe = pipeline_class(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(str(out), safe_serialization=True)
    import shutil
    shutil.rmtree(out / "_tokenizer_src")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write the model to")
    parser.add_argument("--inpainting", action="store_true", help="9-channel UNet (an inpainting model)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build_tiny_sd(args.out, inpainting=args.inpainting, seed=args.seed))


if __name__ == "__main__":
    main()
