"""Generate pseudo anomalies with a trained CDM: learned anomaly tokens inpainted into normal images.

For each normal image of a target and each mask slot, the region around a placed defect mask is
inpainted with the prompt ``"a photo of <class>"`` (the first training template); pixels outside
the region stay the normal image's. The pseudo mask is then made as CAI makes it — the thresholded
difference to the normal image near the placed mask (:func:`cai.engine.pseudo_mask.pseudo_mask`) — and the
rows are written in CAI's schema (:data:`cai.build.OUTPUT_FEATURES`) as a hub-ready folder.

Masks (``masks``):

* ``"cai"``: the placed masks of a CAI split (default: the split the CDM was trained on), each on
  the target image it was made from (matched by ``normal_file``);
* ``"new"``: new placements as CAI places defects: per normal image, ``quota`` slots (large /
  medium / small); a real defect mask of the slot's class from an anomaly set (default: the
  embedded sample's), scaled by CAI's scale matching (:func:`cai.engine.quota.choose_pattern`) and centred
  inside the foreground (:func:`cai.engine.location.select_center`).

Inpainting (:class:`~diffusers.StableDiffusionInpaintPipeline` in both cases):

* base model with a 9-channel UNet (an inpainting model, the default): the UNet sees the mask and
  the masked image at every step;
* base model with a 4-channel UNet (plain SD 1.x): the same pipeline runs img2img with latent mask
  blending — after every denoising step the latents outside the mask are replaced by the normal
  image's latents noised to the next timestep, so only the masked region is generated.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..engine.config import CAIConfig

MASK_MODES = ("cai", "new")


class CDMGenerateError(RuntimeError):
    """The generation cannot run (bad options, unknown class, an output folder of another run...)."""


@dataclass
class GenerateOptions:
    """Everything a ``cai-hub cdm generate`` run depends on.

    Attributes
    ----------
    embeds : str
        Trained CDM: the output folder of ``cai-hub cdm train`` or a hub model id.
    out : str
        Output folder (hub-ready dataset).
    base_model : str or None
        SD 1.x folder or hub id; default: the one the CDM was trained with (``cdm_config.json``).
    target, root, category : str
        Normal images, as for ``build-synthetic`` (``default``: the embedded sample).
    classes : tuple of str
        Anomaly classes to generate (default: every learned class).
    masks : {"cai", "new"}
        Where the masks come from (see the module docstring).
    cai : str or None
        CAI split giving the placed masks (``masks="cai"``); default: the CDM's training split.
    daad : str or None
        Anomaly set giving the mask shapes (``masks="new"``); default: the embedded sample's.
    limit : int or None
        Stop after this many slots (in order); None: all.
    steps, guidance_scale, strength : int, float, float
        Denoising steps, classifier-free guidance scale, and how far the region is re-noised (1.0:
        from pure noise).
    prompt, negative_prompt : str or None
        Prompt template with ``{}`` for the class token (default: the first training template) and
        the negative prompt.
    size : int
        Normal images are resized to ``size`` x ``size`` (the output size, as in CAI).
    resolution : int or None
        Working resolution of the diffusion model (default: the training resolution); the result is
        resized back to ``size``.
    mask_dilation : int or None
        Pixels the inpainted region extends beyond the placed mask (default: the training value).
    config : CAIConfig
        Pseudo-mask settings (``threshold``, ``median_ksize``, ``mask_margin``, ``min_component``) and,
        for ``masks="new"``, the slots per normal image (``quota``: large, medium, small) and the scale
        intervals.
    foreground, rembg_model, rembg_model_dir : str
        Foreground of the normal images, as for ``build-synthetic`` (the pseudo mask is kept inside it;
        new masks are placed inside it).
    seed : int
        Slot k of normal image i uses ``default_rng([seed, i, k])`` and a torch generator seeded from
        ``(seed, i, k, attempt)``.
    max_attempts : int
        Generations per slot before an empty pseudo mask skips it.
    device, dtype : str
        ``device`` default: ``cuda`` when available, else ``cpu``; ``dtype``: fp32, fp16 or bf16.
    shard_size : int
        Normal images per parquet shard (a finished shard survives an interruption).
    """

    embeds: str
    out: str
    base_model: str | None = None
    target: str = "default"
    root: str | None = None
    category: str | None = None
    classes: tuple = ()
    masks: str = "cai"
    cai: str | None = None
    daad: str | None = None
    limit: int | None = None
    steps: int = 30
    guidance_scale: float = 7.5
    strength: float = 1.0
    prompt: str | None = None
    negative_prompt: str | None = None
    size: int = 256
    resolution: int | None = None
    mask_dilation: int | None = None
    config: CAIConfig = field(default_factory=CAIConfig)
    foreground: str = "auto"
    rembg_model: str = "u2net"
    rembg_model_dir: str | None = None
    seed: int = 0
    max_attempts: int = 3
    device: str | None = None
    dtype: str = "fp32"
    shard_size: int = 100
    local_files_only: bool = False
    overwrite: bool = False
    push_to_hub: str | None = None
    private: bool = False


# ------------------------------------------------------------------------------------ mask helpers

def place_mask(shape, crop_mask: np.ndarray, center) -> np.ndarray:
    """A (H, W) bool mask with ``crop_mask``'s bounding box centred at ``center`` (row, col), rows
    ``r - h // 2`` to ``r - h // 2 + h`` as in :func:`cai.engine.location.valid_centers`; parts falling off
    the image are cut."""
    from ..engine._checks import bbox

    r0, c0, r1, c1 = bbox(crop_mask)
    crop = crop_mask[r0:r1, c0:c1]
    h, w = crop.shape
    H, W = shape
    top, left = int(center[0]) - h // 2, int(center[1]) - w // 2
    out = np.zeros((H, W), bool)
    rs, cs = max(top, 0), max(left, 0)
    re, ce = min(top + h, H), min(left + w, W)
    if rs < re and cs < ce:
        out[rs:re, cs:ce] = crop[rs - top: re - top, cs - left: ce - left]
    return out


def _fit(mask: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bool copy of a mask: area coverage >= 0.25 when shrinking (thin cracks survive, as in
    :func:`cai.engine.inject.resize_pattern`), nearest when enlarging."""
    if mask.shape == (size, size):
        return mask
    if size < max(mask.shape):
        return cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) >= 0.25
    return cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)


# ----------------------------------------------------------------------------------- the generator

class CDMInpainter:
    """A loaded CDM: base pipeline + learned tokens (+ E_s) ready to inpaint one region at a time.

    Parameters
    ----------
    embeds : str or Path
        Local CDM folder (see :func:`cai.cdm.publish.fetch_cdm` for hub ids).
    base_model : str or None
        Overrides the base model recorded in ``cdm_config.json``.
    """

    def __init__(self, embeds, base_model: str | None = None, device: str | None = None, dtype: str = "fp32",
                 local_files_only: bool = False):
        import torch
        from diffusers import StableDiffusionInpaintPipeline

        from .models import load_base_model
        from .spatial import SPATIAL_WEIGHTS, SpatialEncoder
        from .tokens import load_embeddings

        self.folder = Path(embeds)
        self.config = json.loads((self.folder / "cdm_config.json").read_text())
        self.base_model = base_model or self.config["base_model"]
        base = load_base_model(self.base_model, local_files_only=local_files_only, scheduler="model")
        self.inpainting = base.is_inpainting
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
        self.pipe = StableDiffusionInpaintPipeline(
            vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=base.unet,
            scheduler=base.noise_scheduler, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)
        self.tokens = load_embeddings(self.pipe, self.folder,
                                      [c["token"] for c in self.config["classes"].values()])
        self.pipe.to(self.device)
        if torch_dtype != torch.float32:
            self.pipe.to(dtype=torch_dtype)
        self.pipe.set_progress_bar_config(disable=True)
        self.spatial = None
        if self.config.get("spatial_encoder"):
            self.spatial = SpatialEncoder.load(self.folder / SPATIAL_WEIGHTS).to(self.device).eval()
        self._prompt_cache = {}

    @property
    def method(self) -> str:
        return ("inpainting model (9-channel UNet)" if self.inpainting
                else "SD img2img with latent mask blending (4-channel UNet)")

    def token(self, anomaly_class: str) -> str:
        try:
            return self.config["classes"][anomaly_class]["token"]
        except KeyError:
            raise CDMGenerateError(f"class {anomaly_class!r} was not learned (learned: "
                                   f"{sorted(self.config['classes'])})") from None

    def prompt_embeds(self, anomaly_class: str, prompt: str | None = None, negative_prompt: str | None = None,
                      guidance_scale: float = 7.5):
        """(prompt, negative) embeddings of the class prompt, cached; negative is None without guidance."""
        template = prompt or self.config["prompt_templates"][0]
        key = (anomaly_class, template, negative_prompt, guidance_scale > 1)
        if key not in self._prompt_cache:
            import torch
            with torch.no_grad():
                self._prompt_cache[key] = self.pipe.encode_prompt(
                    template.format(self.token(anomaly_class)), self.pipe.device, 1, guidance_scale > 1,
                    negative_prompt=negative_prompt)
        return self._prompt_cache[key]

    def inpaint(self, normal: np.ndarray, region: np.ndarray, placed: np.ndarray, anomaly_class: str,
                seed: int, steps: int = 30, guidance_scale: float = 7.5, strength: float = 1.0,
                resolution: int | None = None, prompt: str | None = None,
                negative_prompt: str | None = None) -> np.ndarray:
        """Inpaint ``anomaly_class`` into ``region`` of ``normal``.

        Parameters
        ----------
        normal : (H, W, 3) uint8 ndarray
        region : (H, W) bool ndarray
            Pixels the model may change (everything else is copied from ``normal``).
        placed : (H, W) bool ndarray
            The placed defect mask (E_s's input).

        Returns
        -------
        (H, W, 3) uint8 ndarray
        """
        import torch
        from PIL import Image

        from .spatial import append_spatial_tokens

        H, W = normal.shape[:2]
        work = int(resolution or self.config["resolution"])
        scale = self.pipe.vae_scale_factor
        work = max(scale, work // scale * scale)
        image = cv2.resize(normal, (work, work), interpolation=cv2.INTER_AREA if work < H else cv2.INTER_CUBIC)
        mask = cv2.resize(region.astype(np.uint8) * 255, (work, work), interpolation=cv2.INTER_NEAREST)
        prompt_embeds, negative_embeds = self.prompt_embeds(anomaly_class, prompt, negative_prompt, guidance_scale)
        if self.spatial is not None:
            spatial_size = int(self.config["resolution"])
            placed_f = cv2.resize(placed.astype(np.float32), (spatial_size, spatial_size), interpolation=cv2.INTER_AREA)
            placed_t = torch.from_numpy(np.clip(placed_f, 0, 1))[None, None].to(self.device)
            with torch.no_grad():
                # the same spatial tokens on both sides of classifier-free guidance: guidance amplifies the
                # class token, E_s says where
                prompt_embeds = append_spatial_tokens(prompt_embeds, self.spatial, placed_t)
                if negative_embeds is not None:
                    negative_embeds = append_spatial_tokens(negative_embeds, self.spatial, placed_t)
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        with torch.no_grad():
            out = self.pipe(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds,
                            image=Image.fromarray(image), mask_image=Image.fromarray(mask), height=work, width=work,
                            num_inference_steps=steps, guidance_scale=guidance_scale, strength=strength,
                            generator=generator, output_type="np").images[0]
        generated = np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)
        if (work, work) != (H, W):
            generated = cv2.resize(generated, (W, H), interpolation=cv2.INTER_AREA if work > H else cv2.INTER_CUBIC)
        return np.where(region[..., None], generated, normal)


# ------------------------------------------------------------------------------------------- runs

def _torch_seed(*values) -> int:
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1)[0])


def _fingerprint(options: GenerateOptions, cdm_config: dict, normals) -> str:
    from datasets.fingerprint import Hasher
    opts = asdict(options)
    for key in ("out", "overwrite", "push_to_hub", "private", "shard_size", "device"):
        opts.pop(key)
    opts["config"] = options.config.to_dict()
    return Hasher.hash({"options": opts, "cdm": cdm_config, "normals": list(normals["file"]), "version": 1})


class _CAIMasks:
    """Slots from a CAI split's placed masks, grouped by the target image they were made on."""

    def __init__(self, spec: str, classes, normals):
        from .data import load_cai_split
        self.ds, _ = load_cai_split(spec, classes)
        by_file = {f: i for i, f in enumerate(normals["file"])}
        self.slots: dict[int, list[int]] = {}
        self.unmatched = 0
        for row_index, normal_file in enumerate(self.ds["normal_file"]):
            position = by_file.get(normal_file)
            if position is None:
                self.unmatched += 1
            else:
                self.slots.setdefault(position, []).append(row_index)
        if not self.slots:
            raise CDMGenerateError(f"no row of {spec} was made from an image of this target (its normal_file "
                                   "values do not match); give the target the CAI split was built on")

    def count(self, position: int) -> int:
        return len(self.slots.get(position, []))

    def slot_masks(self, position: int, normal, foreground, seed, normal_index, size):
        from .data import decode_mask
        for row_index in self.slots.get(position, []):
            row = self.ds[row_index]
            placed = _fit(decode_mask(row["placed_mask"]), size)
            yield dict(k=int(row["k"]), anomaly_class=str(row["anomaly_class"]), placed=placed,
                       scale=row.get("scale") or "cai", str_ratio=float(row.get("str_ratio") or 0.0),
                       resize_ratio=float(row.get("resize_ratio") or 0.0),
                       center=[int(v) for v in (row.get("center") or (0, 0))],
                       source_id=str(row.get("source_id") or ""), source=str(row.get("source") or ""))


class _NewMasks:
    """Slots placed as CAI places defects, with real mask shapes of each class from an anomaly set."""

    def __init__(self, spec: str, classes, config: CAIConfig, target_name: str):
        from ..anomaly_set import AnomalySetError, load_anomaly_set, prepare_patterns
        anomalies = load_anomaly_set(spec)
        # CAI's leakage guard: never take defects (here: their shapes) from the target's own dataset
        self.excluded = [target_name] if target_name in set(map(str, anomalies["source"])) else []
        try:
            patterns, self.report = prepare_patterns(anomalies, classes=set(classes), exclude_sources=self.excluded)
        except AnomalySetError as exc:
            guard = f" (source {self.excluded[0]} excluded: the target's own dataset)" if self.excluded else ""
            raise CDMGenerateError(f"no usable mask of class(es) {sorted(classes)} in {spec}{guard}: {exc}") from exc
        self.classes = list(classes)
        self.config = config
        names = [str(c) for c in patterns["anomaly_class"]]
        self.by_class = {c: [i for i, n in enumerate(names) if n == c] for c in self.classes}
        empty = [c for c, rows in self.by_class.items() if not rows]
        if empty:
            raise CDMGenerateError(f"the anomaly set {spec} has no usable mask of class(es) {empty}")
        self.patterns = patterns
        self.long_sides = np.asarray(patterns["long_side"], dtype=np.float64)
        self.per_image = sum(config.quota)

    def count(self, position: int) -> int:
        return self.per_image

    def slot_masks(self, position: int, normal, foreground, seed, normal_index, size):
        from ..engine.location import select_center
        from ..engine.inject import resize_pattern
        from ..engine.quota import choose_pattern, plan_scales
        from ..engine.scale import along_factor, foreground_scale

        if not foreground.any():
            for k, scale in enumerate(plan_scales(self.config.quota)):
                yield dict(k=k, skip="empty_foreground", scale=scale)
            return
        s_f, extent = foreground_scale(foreground, self.config.scale_reference)
        for k, scale in enumerate(plan_scales(self.config.quota)):
            rng = np.random.default_rng([seed, normal_index, k])
            anomaly_class = self.classes[(normal_index + k) % len(self.classes)]
            rows = self.by_class[anomaly_class]
            slot = None
            for _ in range(self.config.max_attempts):
                choice = choose_pattern(self.long_sides[rows] / s_f, scale, rng, self.config)
                if choice is None:
                    break
                index, target_ratio, resize = choice
                row = self.patterns[rows[index]]
                crop = np.asarray(row["pattern_mask"].convert("L")) > 127
                resize *= along_factor(crop, extent, self.config.scale_reference)
                _, crop = resize_pattern(crop.astype(np.uint8), crop, resize)
                if not crop.any():
                    continue
                ys, xs = np.nonzero(crop)
                center = select_center(foreground, (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1), rng,
                                       margin=self.config.region_dilation + 1)
                if center is None:
                    continue
                placed = place_mask(foreground.shape, crop, center) & foreground
                if placed.any():
                    slot = dict(k=k, anomaly_class=anomaly_class, placed=placed, scale=scale,
                                str_ratio=float(target_ratio), resize_ratio=float(resize),
                                center=[int(center[0]), int(center[1])], source_id=str(row["source_id"]),
                                source=str(row["source"]))
                    break
            yield slot or dict(k=k, skip=f"no_placement_for_{scale}", scale=scale, anomaly_class=anomaly_class)


def generate(options: GenerateOptions, progress: bool = True, echo=None) -> dict:
    """Run a CDM generation; return the summary (also ``summary.json``). The output folder gets
    ``data/train-*.parquet`` (CAI's schema), ``README.md``, ``contact_sheet.png`` and ``summary.json``,
    all listed in its manifest (:mod:`cai.output_folder`); every input is read before the folder is
    claimed. ``echo(line)`` receives "resuming at shard k of n" / "already complete"."""
    from ..progress import datasets_bars

    with datasets_bars(progress):
        return _generate(options, progress, echo or (lambda line: None))


def _generate(options: GenerateOptions, progress: bool, echo) -> dict:
    import datasets
    from .. import runloop
    from ..schema import OUTPUT_FEATURES
    from ..foreground import make_foreground
    from ..imageio import BadInput, encode_png, load_rgb
    from ..engine.pseudo_mask import dilate, grey, mask_fidelity, pseudo_mask
    from ..targets import DEFAULT_SAMPLE, load_target
    from ..output_folder import OutputFolderError, check_not_input, public_name
    from .publish import fetch_cdm

    if options.masks not in MASK_MODES:
        raise CDMGenerateError(f"masks must be one of {MASK_MODES}, got {options.masks!r}")
    if options.steps < 1 or options.size < 8 or options.max_attempts < 1 or options.shard_size < 1:
        raise CDMGenerateError("steps, max_attempts and shard_size must be >= 1 and size >= 8")
    if not 0 < options.strength <= 1:
        raise CDMGenerateError(f"strength must be in (0, 1], got {options.strength}")
    folder = fetch_cdm(options.embeds)
    cdm_config = json.loads((folder / "cdm_config.json").read_text())
    learned = list(cdm_config["classes"])
    classes = list(options.classes) or learned
    unknown = sorted(set(classes) - set(learned))
    if unknown:
        raise CDMGenerateError(f"classes {unknown} were not learned by {options.embeds} (learned: {learned})")
    normals, target_name = load_target(options.target, options.root, options.category)
    dilation = cdm_config.get("mask_dilation", 4) if options.mask_dilation is None else options.mask_dilation
    cfg = options.config

    if options.masks == "cai":
        source = options.cai or cdm_config.get("train_data")
        if not source:
            raise CDMGenerateError("--masks cai needs --cai (the CAI split giving the placed masks)")
        slots = _CAIMasks(source, classes, normals)
        masks_note = f"placed masks of the CAI split `{public_name(source)}`"
    else:
        source = options.daad or str(DEFAULT_SAMPLE / "anomalies")
        slots = _NewMasks(source, classes, cfg, target_name)
        masks_note = (f"new placements (quota {'/'.join(map(str, cfg.quota))}) inside the foreground, real mask "
                      f"shapes from `{public_name(source) if options.daad else 'the embedded default sample'}` scaled as CAI does"
                      + (f" (source {', '.join(slots.excluded)} excluded: the target's own dataset)"
                         if slots.excluded else ""))

    out = Path(options.out)
    fingerprint = _fingerprint(options, cdm_config, normals)
    inputs = {"--embeds": options.embeds, "--root": options.root, "--cai": options.cai, "--daad": options.daad,
              "--base-model": options.base_model}
    try:
        check_not_input(out, inputs, nested_ok=("--root",) if options.target == "mvtec" else ())
    except OutputFolderError as exc:
        raise CDMGenerateError(str(exc)) from None

    default_run = options.target == "default"
    fg_kind = "all" if default_run and options.foreground == "auto" else options.foreground
    fg_fn = make_foreground(fg_kind, category=options.category, model=options.rembg_model,
                            model_dir=options.rembg_model_dir)
    inpainter = CDMInpainter(folder, options.base_model, device=options.device, dtype=options.dtype,
                             local_files_only=options.local_files_only)
    try:  # every input is read by now: claim the folder (nothing was written before)
        out_folder = runloop.claim_output(out, "cdm-generate", ".cdm", inputs=inputs, overwrite=options.overwrite,
                                          nested_ok=("--root",) if options.target == "mvtec" else ())
    except OutputFolderError as exc:
        raise CDMGenerateError(str(exc)) from None
    work = runloop.open_run(out_folder, ".cdm", fingerprint, error=CDMGenerateError)

    positions = [p for p in range(len(normals)) if slots.count(p)]
    total = sum(slots.count(p) for p in positions)
    if options.limit is not None:
        kept, budget = [], options.limit
        for p in positions:
            if budget <= 0:
                break
            kept.append(p)
            budget -= slots.count(p)
        positions, total = kept, min(total, options.limit)
    n_shards = max(1, -(-len(positions) // options.shard_size))
    done = 0

    def make_shard(shard, tick):
        nonlocal done
        rows, status = [], []
        for position in positions[shard * options.shard_size:(shard + 1) * options.shard_size]:
            record = normals[position]
            normal_index, normal_file = int(record["normal_index"]), record["file"]
            try:
                normal, is_grey = load_rgb(record["image"])
            except BadInput as exc:
                status.extend([f"normal_{exc.reason}"] * slots.count(position))
                continue
            if normal.shape[:2] != (options.size, options.size):
                normal = cv2.resize(normal, (options.size, options.size), interpolation=cv2.INTER_AREA)
            foreground = fg_fn(normal[..., 0] if is_grey else normal)
            for slot in slots.slot_masks(position, normal, foreground, options.seed, normal_index, options.size):
                if options.limit is not None and done >= options.limit:
                    break
                done += 1
                tick()
                if "skip" in slot:
                    status.append(slot["skip"])
                    continue
                if slot["anomaly_class"] not in classes:
                    status.append("class_not_selected")
                    continue
                placed = slot["placed"] & foreground if foreground.any() else slot["placed"]
                if not placed.any():
                    status.append("placed_mask_outside_foreground")
                    continue
                region = dilate(placed, dilation)
                made = None
                for attempt in range(1, options.max_attempts + 1):
                    image = inpainter.inpaint(
                        normal, region, placed, slot["anomaly_class"],
                        seed=_torch_seed(options.seed, normal_index, slot["k"], attempt), steps=options.steps,
                        guidance_scale=options.guidance_scale, strength=options.strength,
                        resolution=options.resolution, prompt=options.prompt,
                        negative_prompt=options.negative_prompt)
                    if is_grey:
                        image = np.repeat(np.rint(grey(image)).clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
                    pmask, change = pseudo_mask(normal, image, placed, cfg.threshold, cfg.median_ksize,
                                                cfg.mask_margin, cfg.min_component, return_change=True)
                    pmask &= foreground
                    if pmask.any():
                        made = (image, pmask, change, attempt)
                        break
                if made is None:
                    status.append("empty_mask")
                    continue
                image, pmask, change, attempt = made
                fid = mask_fidelity(normal, image, pmask, placed, threshold=cfg.threshold, change=change)
                rows.append({
                    "image": encode_png(image[..., 0] if is_grey else image), "mask": encode_png(pmask),
                    "placed_mask": encode_png(placed), "normal_index": normal_index, "normal_file": normal_file,
                    "k": slot["k"], "anomaly_class": slot["anomaly_class"], "scale": slot["scale"],
                    "str_ratio": slot["str_ratio"], "resize_ratio": slot["resize_ratio"],
                    "center": slot["center"], "source_id": slot["source_id"], "source": slot["source"],
                    "mode": "cdm", "seed": options.seed, "attempts": attempt, "mask_iou": fid["iou"],
                    "visible_share": fid["visible_share"]})
                status.append("ok")
        made_ds = datasets.Dataset.from_list(rows, features=OUTPUT_FEATURES) if rows else \
            datasets.Dataset.from_dict({k: [] for k in OUTPUT_FEATURES}, features=OUTPUT_FEATURES)
        stats = {"slots": len(status), "made": len(rows), "skipped": dict(Counter(s for s in status if s != "ok")),
                 "sum_mask_iou": float(sum(r["mask_iou"] for r in rows)),
                 "sum_visible_share": float(sum(r["visible_share"] for r in rows))}
        return made_ds, stats

    def count_resumed(stats):
        nonlocal done
        done += stats["slots"]

    shard_stats = runloop.run_shards(out_folder, work, n_shards, make_shard, total, "CDM pseudo anomalies", progress,
                                     on_resumed=count_resumed, echo=echo)
    t = runloop.totals(shard_stats, ("mask_iou", "visible_share"))
    made_total, skipped, wall = t["made"], t["skipped"], t["wall_s"]
    summary = {
        "target": target_name, "category": options.category, "embeds": public_name(options.embeds),
        "base_model": public_name(inpainter.base_model), "method": inpainter.method, "classes": classes,
        "masks": options.masks, "masks_source": public_name(source) if options.masks == "cai" or options.daad
        else "embedded default sample", "masks_note": masks_note,
        "normals": len(positions), "slots": sum(s["slots"] for s in shard_stats), "made": made_total,
        "skipped": skipped, "s_per_pseudo_anomaly": wall / made_total if made_total else None,
        "steps": options.steps, "guidance_scale": options.guidance_scale, "strength": options.strength,
        "resolution": int(options.resolution or cdm_config["resolution"]), "size": options.size,
        "seed": options.seed, "mask_dilation": dilation, "threshold": cfg.threshold,
        "config": cfg.to_dict(), "foreground": {"requested": options.foreground, "used": fg_fn.kind,
                                                 "note": fg_fn.note},
        "mask_fidelity": {"mean_iou_mask_vs_placed": t["means"]["mask_iou"],
                          "mean_visible_share": t["means"]["visible_share"]},
        "unmatched_cai_rows": getattr(slots, "unmatched", 0),
        "excluded_mask_sources": getattr(slots, "excluded", []),
        "fingerprint": fingerprint,
    }
    from .publish import render_dataset_card
    return runloop.finish_run(out_folder, summary, normals, options.size, render_dataset_card, options.push_to_hub,
                              options.private)
