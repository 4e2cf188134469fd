"""Train the CDM (CAI-guided Diffusion Mechanism) on a CAI pseudo-anomaly split.

One placeholder token per anomaly class (``<crack>``; ``--num-vectors`` N vectors each) is learned by
textual inversion against a frozen Stable Diffusion 1.x model, with the mask-weighted loss of Eq. 5
of Wang, Hu et al. 2025: only the pseudo-anomaly region y_loc teaches the embedding. An optional
spatial encoder E_s (``--spatial-tokens K``) turns the placed defect mask into K extra prompt tokens.
VAE, UNet and the text-encoder body stay frozen; only the new embedding rows (and E_s) train.

Runs as ``python -m cai.cdm.train``, ``accelerate launch -m cai.cdm.train`` or ``cai-hub cdm train``.
Order of the script: parse_args -> setup (seed, accelerator, models, tokens) -> loop -> save -> push.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .models import DEFAULT_BASE_MODEL

logger = logging.getLogger(__name__)

#: Prompt templates a training row's prompt is drawn from ("{}" is the class placeholder).
PROMPT_TEMPLATES = (
    "a photo of {}",
    "a close-up photo of {}",
    "a photo of a surface with {}",
    "an industrial image with {}",
    "{}",
)
CONFIG_NAME = "cdm_config.json"
MANIFEST = ".cai-hub-manifest.json"  # = cai.output_folder.MANIFEST
LOSS_LOG = "loss_log.jsonl"
MIXED_PRECISION = ("no", "fp16", "bf16")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")


class CDMTrainError(RuntimeError):
    """The run cannot start or go on (bad options, missing checkpoint...)."""


def _opt(default, help: str, type=None, choices=None, flag=None):
    """A config field with what the CLI needs to expose it (help, type, choices, option name)."""
    return field(default=default, metadata={"help": help, "type": type, "choices": choices, "flag": flag})


@dataclass
class CDMTrainConfig:
    """Every setting of a CDM training run (the CLI and ``parse_args`` are built from these fields)."""

    train_data: str = _opt(None, "CAI pseudo-anomaly split: output folder of `cai-hub build-synthetic` or a hub "
                                 "dataset id.", str)
    output_dir: str = _opt("cdm-output", "Folder for the learned embeddings, E_s, config, card, loss log and "
                                         "checkpoints.", str)
    base_model: str = _opt(DEFAULT_BASE_MODEL, "Stable Diffusion 1.x model (local folder with vae/ unet/ "
                                               "text_encoder/ tokenizer/ scheduler/, or hub id). A 9-channel UNet "
                                               "is trained as an inpainting model.", str)
    base_model_name: str = _opt(None, "Hub id recorded on the model card when --base-model is a local folder.", str)
    revision: str = _opt(None, "Revision of a hub base model.", str)
    local_files_only: bool = _opt(False, "Never contact the hub for the base model.", bool)
    classes: tuple = _opt((), "Anomaly classes to learn, comma-separated (default: every class in the split).",
                          tuple)
    num_vectors: int = _opt(1, "Embedding vectors per class token (<c>, <c>_1, ...).", int)
    init_token: str = _opt(None, "Word initialising every class token (default: the class name when it is one "
                                 "token, else 'defect').", str)
    placeholder_format: str = _opt("<{}>", "Placeholder token of a class, '{}' standing for its name.", str)
    prompt_template: str = _opt(None, "Fixed training prompt, '{}' standing for the placeholder (default: drawn "
                                      "from PROMPT_TEMPLATES per row).", str)
    spatial_tokens: int = _opt(0, "K tokens made from the placed mask by the spatial encoder E_s and appended to "
                                  "the prompt embeddings (0: no E_s).", int)
    spatial_learning_rate: float = _opt(None, "Learning rate of E_s (default: --learning-rate).", float)
    resolution: int = _opt(512, "Training images are resized to RESOLUTION x RESOLUTION.", int)
    mask_dilation: int = _opt(4, "Pixels (at the stored size) the inpainting region extends beyond the placed "
                                 "and pseudo masks (inpainting base models).", int)
    random_flip: bool = _opt(True, "Flip rows horizontally at random (image and masks together).", bool)
    train_batch_size: int = _opt(4, "Batch size per device.", int)
    gradient_accumulation_steps: int = _opt(1, "Batches accumulated per optimizer step.", int)
    gradient_checkpointing: bool = _opt(False, "Trade compute for memory in the UNet and text encoder.", bool)
    max_train_steps: int = _opt(2000, "Optimizer steps of the run (the global step count, resume included).", int)
    learning_rate: float = _opt(5e-4, "Learning rate of the token embeddings.", float)
    scale_lr: bool = _opt(False, "Multiply the learning rates by batch size x accumulation x processes.", bool)
    lr_scheduler: str = _opt("constant", "Learning-rate schedule.", str, LR_SCHEDULERS)
    lr_warmup_steps: int = _opt(0, "Warm-up steps of the schedule.", int)
    adam_beta1: float = _opt(0.9, "AdamW beta1.", float)
    adam_beta2: float = _opt(0.999, "AdamW beta2.", float)
    adam_weight_decay: float = _opt(1e-2, "AdamW weight decay.", float)
    adam_epsilon: float = _opt(1e-8, "AdamW epsilon.", float)
    max_grad_norm: float = _opt(None, "Clip the gradient norm to this (default: no clipping).", float)
    mixed_precision: str = _opt(None, "no|fp16|bf16 (default: accelerate's config). VAE and UNet run in this "
                                      "precision; the trained embeddings stay float32.", str, MIXED_PRECISION)
    seed: int = _opt(0, "Seed of data order, noise, timesteps, flips and templates.", int)
    checkpointing_steps: int = _opt(500, "Save a resumable checkpoint every N steps.", int)
    checkpoints_total_limit: int = _opt(None, "Keep at most this many checkpoints.", int)
    resume_from_checkpoint: str = _opt(None, "'latest' or a checkpoint folder to continue from (the global step "
                                             "count continues).", str)
    dataloader_num_workers: int = _opt(0, "DataLoader worker processes.", int)
    cache_dir: str = _opt(None, "datasets cache folder for the training split.", str)
    push_to_hub: str = _opt(None, "Also push the result to this hub model repo.", str, flag="push-to-hub")
    private: bool = _opt(False, "Create the hub repo private.", bool)
    progress: bool = _opt(True, "Show a progress bar.", bool)

    def __post_init__(self):
        if isinstance(self.classes, str):
            self.classes = tuple(c.strip() for c in self.classes.split(",") if c.strip())
        self.classes = tuple(self.classes)

    def check(self) -> None:
        """Raise :class:`CDMTrainError` on settings no run can use."""
        if not self.train_data:
            raise CDMTrainError("--train-data is required")
        positive = ("num_vectors", "train_batch_size", "gradient_accumulation_steps", "max_train_steps",
                    "checkpointing_steps", "resolution")
        for name in positive:
            if getattr(self, name) < 1:
                raise CDMTrainError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("spatial_tokens", "mask_dilation", "lr_warmup_steps", "dataloader_num_workers"):
            if getattr(self, name) < 0:
                raise CDMTrainError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if "{}" not in self.placeholder_format:
            raise CDMTrainError("--placeholder-format must contain '{}'")
        if self.prompt_template is not None and "{}" not in self.prompt_template:
            raise CDMTrainError("--prompt-template must contain '{}'")
        if self.mixed_precision not in (None, *MIXED_PRECISION):
            raise CDMTrainError(f"--mixed-precision must be one of {MIXED_PRECISION}")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise CDMTrainError(f"--lr-scheduler must be one of {LR_SCHEDULERS}")
        if self.checkpoints_total_limit is not None and self.checkpoints_total_limit < 1:
            raise CDMTrainError("--checkpoints-total-limit must be >= 1")

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}


@dataclass
class TrainResult:
    """What :func:`train` returns: where it wrote, how far it got, and the models it trained
    (``models`` holds the unwrapped tokenizer, text encoder, VAE, UNet and E_s, for inspection)."""

    output_dir: Path
    global_step: int
    losses: list
    class_tokens: list
    models: dict = field(default_factory=dict, repr=False)


# --------------------------------------------------------------------------------------------- args

def parse_args(argv=None) -> CDMTrainConfig:
    """Command-line options of ``python -m cai.cdm.train`` (one per :class:`CDMTrainConfig` field)."""
    parser = argparse.ArgumentParser(prog="python -m cai.cdm.train", description=__doc__.split("\n\n")[0])
    for f in dataclasses.fields(CDMTrainConfig):
        meta = f.metadata
        name = "--" + (meta.get("flag") or f.name.replace("_", "-"))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if meta["type"] is bool:
            parser.add_argument(name, dest=f.name, action=argparse.BooleanOptionalAction, default=default,
                                help=meta["help"])
        elif meta["type"] is tuple:
            parser.add_argument(name, dest=f.name, default=",".join(default), help=meta["help"])
        else:
            parser.add_argument(name, dest=f.name, type=meta["type"], default=default, choices=meta["choices"],
                                help=meta["help"], required=f.name == "train_data")
    return CDMTrainConfig(**vars(parser.parse_args(argv)))


# ----------------------------------------------------------------------------------------- helpers

def _checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in output_dir.glob("checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def resolve_checkpoint(output_dir, spec: str | None) -> tuple[int, Path] | None:
    """``(global step, folder)`` of the checkpoint to resume from, or None to start afresh.

    ``"latest"`` picks the highest ``checkpoint-N`` in ``output_dir`` (None when there is none);
    a path must be a ``checkpoint-N`` folder.
    """
    if not spec:
        return None
    if spec == "latest":
        found = _checkpoints(Path(output_dir))
        return found[-1] if found else None
    path = Path(spec)
    match = re.fullmatch(r"checkpoint-(\d+)", path.name)
    if not path.is_dir() or not match:
        raise CDMTrainError(f"--resume-from-checkpoint {spec}: not a checkpoint-N folder")
    return int(match.group(1)), path


def _seed_of(*values) -> int:
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1)[0])


def _base_model_id(cfg: CDMTrainConfig) -> str | None:
    """Hub id of the base model for the card: the id itself, --base-model-name, or the
    ``models--owner--name`` part of a hub-cache path."""
    if cfg.base_model_name:
        return cfg.base_model_name
    if not Path(cfg.base_model).exists():
        return cfg.base_model
    match = re.search(r"models--([^/]+?)--([^/]+)", str(Path(cfg.base_model).resolve()))
    return f"{match.group(1)}/{match.group(2)}" if match else None


def _truncate_log(path: Path, global_step: int) -> None:
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["step"] <= global_step]
    path.write_text("".join(line + "\n" for line in keep))


# ------------------------------------------------------------------------------------------- train

def train(cfg: CDMTrainConfig) -> TrainResult:
    """Run the CDM training described by ``cfg``; see the module docstring."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers.optimization import get_scheduler
    from tqdm.auto import tqdm

    from .data import CAITrainingSet, EpochSampler, load_cai_split
    from .loss import latent_mask, masked_diffusion_loss
    from .models import load_base_model
    from .spatial import SpatialEncoder, SpatialEncoderConfig, append_spatial_tokens
    from .tokens import add_class_tokens, read_embeddings, write_embeddings_into

    # ------------------------------------------------------------------ setup
    cfg.check()
    output_dir = Path(cfg.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, mixed_precision=cfg.mixed_precision,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")))
    set_seed(cfg.seed)

    ds, classes = load_cai_split(cfg.train_data, cfg.classes, cache_dir=cfg.cache_dir)
    base = load_base_model(cfg.base_model, revision=cfg.revision, local_files_only=cfg.local_files_only)
    folder = claim_train_folder(output_dir, cfg, write=accelerator.is_main_process)  # inputs read: claim it
    tokenizer, text_encoder, vae, unet, noise_scheduler = (base.tokenizer, base.text_encoder, base.vae, base.unet,
                                                           base.noise_scheduler)
    class_tokens = add_class_tokens(tokenizer, text_encoder, classes, num_vectors=cfg.num_vectors,
                                    init_token=cfg.init_token, placeholder_format=cfg.placeholder_format)

    vae.requires_grad_(False)
    unet.requires_grad_(False)
    text_encoder.requires_grad_(False)
    embeddings = text_encoder.get_input_embeddings()
    embeddings.weight.requires_grad_(True)
    # rows that must never change: every row but the placeholders'
    keep_rows = torch.ones(embeddings.weight.shape[0], dtype=torch.bool)
    keep_rows[[i for ct in class_tokens for i in ct.ids]] = False
    original_rows = embeddings.weight.detach().clone()

    spatial = None
    if cfg.spatial_tokens:
        spatial = SpatialEncoder(SpatialEncoderConfig(num_tokens=cfg.spatial_tokens,
                                                      embed_dim=text_encoder.config.hidden_size))
        spatial.train()
    if cfg.gradient_checkpointing:
        unet.train()
        unet.enable_gradient_checkpointing()
        text_encoder.gradient_checkpointing_enable()

    scale = (cfg.train_batch_size * cfg.gradient_accumulation_steps * accelerator.num_processes
             if cfg.scale_lr else 1)
    groups = [{"params": [embeddings.weight], "lr": cfg.learning_rate * scale}]
    if spatial is not None:
        groups.append({"params": list(spatial.parameters()),
                       "lr": (cfg.spatial_learning_rate or cfg.learning_rate) * scale})
    optimizer = torch.optim.AdamW(groups, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                  weight_decay=cfg.adam_weight_decay, eps=cfg.adam_epsilon)

    train_set = CAITrainingSet(ds, classes, resolution=cfg.resolution, dilation=cfg.mask_dilation)
    sampler = EpochSampler(len(train_set), seed=cfg.seed)
    dataloader = torch.utils.data.DataLoader(train_set, batch_size=cfg.train_batch_size, sampler=sampler,
                                             num_workers=cfg.dataloader_num_workers)
    lr_scheduler = get_scheduler(cfg.lr_scheduler, optimizer=optimizer,
                                 num_warmup_steps=cfg.lr_warmup_steps * accelerator.num_processes,
                                 num_training_steps=cfg.max_train_steps * accelerator.num_processes)

    trained = [text_encoder] + ([spatial] if spatial is not None else [])
    prepared = accelerator.prepare(*trained, optimizer, dataloader, lr_scheduler)
    text_encoder_p = prepared[0]
    spatial_p = prepared[1] if spatial is not None else None
    trained_p = [text_encoder_p] + ([spatial_p] if spatial is not None else [])
    optimizer, dataloader, lr_scheduler = prepared[-3:]

    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    for frozen in (vae, unet):
        frozen.to(accelerator.device)
        if weight_dtype != torch.float32:
            frozen.to(dtype=weight_dtype)
    keep_rows = keep_rows.to(accelerator.device)
    original_rows = original_rows.to(accelerator.device)

    # checkpoints hold only what trains (new rows, E_s) plus optimizer, schedule and RNG states
    def save_hook(models, weights, folder):
        weights.clear()
        if accelerator.is_main_process:
            from safetensors.torch import save_file
            rows = embeddings.weight.detach().float().cpu()
            save_file({ct.token: rows[ct.ids].contiguous() for ct in class_tokens},
                      str(Path(folder) / "learned_embeds.safetensors"))
            if spatial is not None:
                accelerator.unwrap_model(spatial_p).save(folder)

    def load_hook(models, folder):
        models.clear()
        write_embeddings_into(accelerator.unwrap_model(text_encoder_p), class_tokens, read_embeddings(folder))
        if spatial is not None:
            accelerator.unwrap_model(spatial_p).load_state_dict(SpatialEncoder.load(folder).state_dict())

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)

    steps_per_epoch = math.ceil(len(dataloader) / cfg.gradient_accumulation_steps)
    num_epochs = math.ceil(cfg.max_train_steps / steps_per_epoch)
    global_step, first_epoch, skip_batches = 0, 0, 0
    log_path = output_dir / LOSS_LOG
    resume = resolve_checkpoint(output_dir, cfg.resume_from_checkpoint)
    if cfg.resume_from_checkpoint and resume is None:
        accelerator.print(f"no checkpoint in {output_dir}; starting a new run")
    if resume is not None:
        global_step, path = resume
        accelerator.print(f"resuming from {path} (step {global_step})")
        accelerator.load_state(str(path))
        first_epoch = global_step // steps_per_epoch
        skip_batches = (global_step % steps_per_epoch) * cfg.gradient_accumulation_steps
        if accelerator.is_main_process:
            _truncate_log(log_path, global_step)
    else:
        stale = _checkpoints(output_dir)
        if stale:
            accelerator.print(f"warning: {output_dir} holds checkpoints of an earlier run ({stale[-1][1].name}...); "
                              "this run starts at step 0 and overwrites those it reaches")
        if accelerator.is_main_process and log_path.exists():
            log_path.unlink()
    if accelerator.is_main_process:
        folder.add(log_path)

    templates = (cfg.prompt_template,) if cfg.prompt_template else PROMPT_TEMPLATES
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type not in ("epsilon", "v_prediction"):
        raise CDMTrainError(f"unsupported prediction type {prediction_type!r}")
    inpainting = base.is_inpainting
    num_timesteps = noise_scheduler.config.num_train_timesteps
    device = accelerator.device

    def encode(pixels, generator):
        dist = vae.encode(pixels.to(device, dtype=weight_dtype)).latent_dist
        return dist.sample(generator=generator) * vae.config.scaling_factor

    # ------------------------------------------------------------------ loop
    bar = tqdm(total=cfg.max_train_steps, initial=global_step, desc="CDM steps",
               disable=not (cfg.progress and accelerator.is_local_main_process))
    losses, step_losses = [], []
    for epoch in range(first_epoch, num_epochs):
        if global_step >= cfg.max_train_steps:
            break
        text_encoder_p.train()
        sampler.set_epoch(epoch)
        loader = dataloader
        start = 0
        if epoch == first_epoch and skip_batches:
            loader = accelerator.skip_first_batches(dataloader, skip_batches)
            start = skip_batches
        for batch_index, batch in enumerate(loader, start=start):
            seed = _seed_of(cfg.seed, epoch, batch_index, accelerator.process_index)
            rng = np.random.default_rng(seed)
            generator = torch.Generator(device=device).manual_seed(seed)
            with accelerator.accumulate(*trained_p):
                pixels, loss_mask = batch["pixel_values"], batch["loss_mask"]
                region, placed = batch["region"], batch["placed"]
                if cfg.random_flip:
                    flip = torch.from_numpy(rng.random(len(pixels)) < 0.5).to(pixels.device)
                    f = flip[:, None, None, None]
                    pixels, loss_mask, region, placed = (torch.where(f, t.flip(-1), t)
                                                         for t in (pixels, loss_mask, region, placed))
                prompts = [templates[rng.integers(len(templates))].format(class_tokens[int(c)].prompt_text)
                           for c in batch["class_index"]]
                input_ids = tokenizer(prompts, padding="max_length", truncation=True,
                                      max_length=tokenizer.model_max_length, return_tensors="pt").input_ids

                with torch.no_grad():
                    latents = encode(pixels, generator)
                noise = torch.randn(latents.shape, generator=generator, device=device, dtype=latents.dtype)
                timesteps = torch.randint(0, num_timesteps, (latents.shape[0],), generator=generator,
                                          device=device).long()
                model_input = noise_scheduler.add_noise(latents, noise, timesteps)
                if inpainting:  # as the inpainting pipeline: binary region on the latent grid + masked image
                    region = region.to(device)
                    with torch.no_grad():
                        masked_latents = encode(pixels.to(device) * (region < 0.5), generator)
                    region_latent = torch.nn.functional.interpolate(region, size=latents.shape[-2:])
                    model_input = torch.cat([model_input, region_latent.to(weight_dtype), masked_latents], dim=1)

                hidden = text_encoder_p(input_ids.to(device))[0].to(dtype=weight_dtype)
                hidden = append_spatial_tokens(hidden, spatial_p, placed.to(device))
                pred = unet(model_input, timesteps, hidden).sample
                target = noise if prediction_type == "epsilon" else noise_scheduler.get_velocity(latents, noise,
                                                                                                 timesteps)
                y_loc = latent_mask(loss_mask.to(device), latents.shape[-2:])
                loss = masked_diffusion_loss(pred.float(), target.float(), y_loc)  # Eq. 5

                accelerator.backward(loss)
                grad = embeddings.weight.grad
                if grad is not None:  # only the placeholder rows learn
                    grad[keep_rows] = 0
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    params = [embeddings.weight] + (list(spatial.parameters()) if spatial is not None else [])
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
                with torch.no_grad():  # weight decay touches every row: put the others back
                    embeddings.weight[keep_rows] = original_rows[keep_rows]

            step_losses.append(accelerator.gather(loss.detach()[None]).mean().item())
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            step_loss = float(np.mean(step_losses))
            step_losses = []
            losses.append(step_loss)
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}")
            if accelerator.is_main_process:
                with open(log_path, "a") as log:
                    log.write(json.dumps({"step": global_step, "epoch": epoch, "loss": step_loss,
                                          "lr": lr_scheduler.get_last_lr()[0]}) + "\n")
            if global_step % cfg.checkpointing_steps == 0:
                _save_checkpoint(accelerator, output_dir, global_step, cfg.checkpoints_total_limit, folder)
            if global_step >= cfg.max_train_steps:
                break
    bar.close()

    # ------------------------------------------------------------------ save
    accelerator.wait_for_everyone()
    text_encoder_u = accelerator.unwrap_model(text_encoder_p)
    spatial_u = accelerator.unwrap_model(spatial_p) if spatial is not None else None
    if accelerator.is_main_process:
        save_cdm(output_dir, cfg, text_encoder_u, class_tokens, spatial_u, global_step, inpainting,
                 n_rows=len(train_set), classes=classes)
        folder.add(*(p for p in output_dir.iterdir() if p.is_file() and p.suffix in (".safetensors", ".json", ".md")
                     and p.name != MANIFEST))
        folder.add_tree(output_dir / "logs")

    # ------------------------------------------------------------------ push
    if accelerator.is_main_process and cfg.push_to_hub:
        from .publish import push_model
        push_model(output_dir, cfg.push_to_hub, private=cfg.private)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(output_dir=output_dir, global_step=global_step, losses=losses, class_tokens=class_tokens,
                       models={"tokenizer": tokenizer, "text_encoder": text_encoder_u, "vae": vae, "unet": unet,
                               "spatial_encoder": spatial_u})


def claim_train_folder(output_dir: Path, cfg, write: bool = True):
    """Claim ``--output-dir`` through :mod:`cai.output_folder` (kind ``cdm-train``): a new or empty
    folder, or one an earlier ``cdm train`` wrote (its checkpoints resume); never someone's folder,
    the current folder or an input. Raises :class:`CDMTrainError` with a one-line message."""
    from ..output_folder import OutputFolderError, claim

    try:
        return claim(output_dir, "cdm-train", inputs={"--train-data": cfg.train_data, "--base-model": cfg.base_model},
                     option="--output-dir", legacy_marker=CONFIG_NAME,
                     legacy_names=(CONFIG_NAME, LOSS_LOG, "README.md", "*.safetensors", "checkpoint-*", "logs"),
                     write=write)
    except OutputFolderError as exc:
        raise CDMTrainError(str(exc)) from None


def _save_checkpoint(accelerator, output_dir: Path, global_step: int, total_limit: int | None, folder) -> Path:
    """Save an accelerate checkpoint (listed in the output manifest); beyond ``total_limit``, remove
    the oldest checkpoints' listed files (never a file the manifest does not name)."""
    if accelerator.is_main_process and total_limit is not None:
        found = _checkpoints(output_dir)
        for _, old in found[: max(0, len(found) + 1 - total_limit)]:
            folder.remove_under(old.relative_to(output_dir).as_posix())
    accelerator.wait_for_everyone()
    path = output_dir / f"checkpoint-{global_step}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        (path / "cdm_state.json").write_text(json.dumps({"global_step": global_step}))
        folder.add_tree(path)
    return path


def save_cdm(output_dir, cfg: CDMTrainConfig, text_encoder, class_tokens, spatial, global_step: int,
             inpainting: bool, n_rows: int, classes) -> Path:
    """Write the trained CDM: ``learned_embeds*.safetensors``, ``spatial_encoder.safetensors`` (with
    E_s), ``cdm_config.json`` and the model card ``README.md``."""
    from .publish import render_model_card
    from .tokens import save_embeddings

    output_dir = Path(output_dir)
    files = save_embeddings(output_dir, text_encoder, class_tokens)
    if spatial is not None:
        spatial.save(output_dir)
    config = {
        "format": "cai-cdm", "version": 1,
        "base_model": cfg.base_model, "base_model_id": _base_model_id(cfg), "inpainting": bool(inpainting),
        "classes": {ct.anomaly_class: {"token": ct.token, "vector_tokens": ct.vector_tokens,
                                       "init_token": ct.init_token, "file": files[ct.anomaly_class]}
                    for ct in class_tokens},
        "num_vectors": cfg.num_vectors,
        "prompt_templates": [cfg.prompt_template] if cfg.prompt_template else list(PROMPT_TEMPLATES),
        "spatial_encoder": dataclasses.asdict(spatial.config) if spatial is not None else None,
        "resolution": cfg.resolution, "mask_dilation": cfg.mask_dilation,
        "train_data": cfg.train_data, "train_rows": n_rows, "train_classes": list(classes),
        "global_step": global_step, "loss": "Eq. 5: sum((y_loc*(target-pred))^2) / (C * sum(y_loc)) per sample, "
                                            "mean over samples with a non-empty mask",
        "training": cfg.to_dict(),
    }
    (output_dir / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True))
    render_model_card(output_dir, config)
    return output_dir


def main(argv=None) -> TrainResult:
    """Entry point of ``python -m cai.cdm.train`` / ``accelerate launch -m cai.cdm.train``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return train(parse_args(argv))


if __name__ == "__main__":
    main()
