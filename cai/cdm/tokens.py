"""Placeholder tokens of the anomaly classes: adding them, and saving/loading their embeddings in
diffusers' textual-inversion format.

Each anomaly class ``c`` gets the token ``<c>`` (``--placeholder-format``); with N vectors per class
the tokens are ``<c>``, ``<c>_1`` ... ``<c>_{N-1}`` and prompts carry all of them in a row. That is
the naming :meth:`diffusers.loaders.TextualInversionLoaderMixin.load_textual_inversion` gives a
multi-vector embedding, so a saved ``{"<c>": (N, D) tensor}`` loads back to the same tokens and the
pipeline expands ``<c>`` in a prompt by itself.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

LEARNED_EMBEDS = "learned_embeds.safetensors"
DEFAULT_INIT_TOKEN = "defect"


class TokenError(ValueError):
    """A placeholder or initialiser token cannot be used with this tokenizer."""


@dataclass
class ClassToken:
    """The placeholder of one anomaly class.

    Attributes
    ----------
    anomaly_class : str
    token : str
        The placeholder as written in prompts, e.g. ``"<crack>"``.
    vector_tokens : list of str
        ``[token, token_1, ...]``, one per learned vector.
    ids : list of int
        Tokenizer ids of ``vector_tokens``.
    init_token : str
        The word whose embedding initialised the vectors.
    """

    anomaly_class: str
    token: str
    vector_tokens: list
    ids: list
    init_token: str

    @property
    def prompt_text(self) -> str:
        """The placeholder as it must appear in a training prompt (all vectors, space-separated)."""
        return " ".join(self.vector_tokens)


def placeholder_token(anomaly_class: str, placeholder_format: str = "<{}>") -> str:
    """``placeholder_format`` filled with the class name, whitespace replaced by ``-``.

    Example
    -------
    >>> placeholder_token("colour stain")
    '<colour-stain>'
    """
    name = re.sub(r"\s+", "-", str(anomaly_class).strip())
    if not name:
        raise TokenError("anomaly class name is empty")
    return placeholder_format.format(name)


def embeds_filename(anomaly_class: str) -> str:
    """``learned_embeds-<class>.safetensors`` with the class name made file-safe."""
    return f"learned_embeds-{re.sub(r'[^A-Za-z0-9._-]+', '_', str(anomaly_class))}.safetensors"


def _single_token_id(tokenizer, word: str):
    ids = tokenizer.encode(word, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def add_class_tokens(tokenizer, text_encoder, classes, num_vectors: int = 1, init_token: str | None = None,
                     placeholder_format: str = "<{}>") -> list[ClassToken]:
    """Add the placeholder tokens of ``classes`` to ``tokenizer`` and grow ``text_encoder``'s input
    embeddings, initialising each new row from a word's embedding.

    The initialiser is ``init_token`` when given (it must be one token), else the class name when it
    is a single token, else ``"defect"``.

    Returns
    -------
    list of ClassToken
        One per class, in the order of ``classes``.

    Raises
    ------
    TokenError
        A placeholder is already in the vocabulary, or the initialiser is not a single token.
    """
    if num_vectors < 1:
        raise TokenError(f"num_vectors must be >= 1, got {num_vectors}")
    classes = list(dict.fromkeys(str(c) for c in classes))
    if not classes:
        raise TokenError("no anomaly class to learn")
    plans = []
    for anomaly_class in classes:
        token = placeholder_token(anomaly_class, placeholder_format)
        vector_tokens = [token] + [f"{token}_{i}" for i in range(1, num_vectors)]
        taken = [t for t in vector_tokens if t in tokenizer.get_vocab()]
        if taken:
            raise TokenError(f"placeholder token(s) {taken} already in the tokenizer's vocabulary; "
                             "choose another --placeholder-format")
        if init_token is not None:
            word = init_token
            init_id = _single_token_id(tokenizer, word)
            if init_id is None:
                raise TokenError(f"--init-token {word!r} is not a single token for this tokenizer")
        else:
            word, init_id = anomaly_class, _single_token_id(tokenizer, anomaly_class)
            if init_id is None:
                word, init_id = DEFAULT_INIT_TOKEN, _single_token_id(tokenizer, DEFAULT_INIT_TOKEN)
                if init_id is None:
                    raise TokenError(f"neither {anomaly_class!r} nor {DEFAULT_INIT_TOKEN!r} is a single token; "
                                     "pass --init-token")
        plans.append((anomaly_class, token, vector_tokens, word, init_id))
    all_tokens = [t for plan in plans for t in plan[2]]
    added = tokenizer.add_tokens(all_tokens)
    if added != len(all_tokens):
        raise TokenError(f"the tokenizer added {added} of {len(all_tokens)} placeholder tokens")
    try:  # the new rows are overwritten below: skip transformers' mean/covariance initialisation
        text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    except TypeError:  # transformers < 4.46
        text_encoder.resize_token_embeddings(len(tokenizer))
    weight = text_encoder.get_input_embeddings().weight
    out = []
    with torch.no_grad():
        for anomaly_class, token, vector_tokens, word, init_id in plans:
            ids = tokenizer.convert_tokens_to_ids(vector_tokens)
            for token_id in ids:
                weight[token_id] = weight[init_id].clone()
            out.append(ClassToken(anomaly_class, token, vector_tokens, list(ids), word))
    return out


def class_embeddings(text_encoder, class_tokens) -> dict[str, torch.Tensor]:
    """``{token: (N, D) float32 tensor}`` read from the text encoder's input embeddings."""
    weight = text_encoder.get_input_embeddings().weight
    return {ct.token: weight[ct.ids].detach().float().cpu().clone() for ct in class_tokens}


def save_embeddings(folder, text_encoder, class_tokens) -> dict[str, str]:
    """Write the learned embeddings in diffusers' textual-inversion format.

    * ``learned_embeds-<class>.safetensors``: one file per class, ``{token: (N, D)}`` — each loads
      with ``pipe.load_textual_inversion(path)``;
    * ``learned_embeds.safetensors``: all classes, ``{token: (N, D), ...}``. With one class this is
      the same single-key file, so ``pipe.load_textual_inversion(folder)`` works; with several,
      ``load_textual_inversion`` rejects a multi-key file — load the per-class files (a list) or use
      :func:`load_embeddings`.

    Returns ``{class: per-class file name}``.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    embeds = class_embeddings(text_encoder, class_tokens)
    files = {}
    for ct in class_tokens:
        name = embeds_filename(ct.anomaly_class)
        save_file({ct.token: embeds[ct.token].contiguous()}, str(folder / name))
        files[ct.anomaly_class] = name
    save_file({k: v.contiguous() for k, v in embeds.items()}, str(folder / LEARNED_EMBEDS))
    return files


def read_embeddings(path) -> dict[str, torch.Tensor]:
    """``{token: (N, D)}`` from a ``learned_embeds*.safetensors`` file or a folder holding
    ``learned_embeds.safetensors``."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / LEARNED_EMBEDS
    if not path.is_file():
        raise FileNotFoundError(f"no learned embeddings at {path}")
    return {k: (v[None] if v.ndim == 1 else v) for k, v in load_file(str(path)).items()}


def load_embeddings(pipe, path, tokens=None) -> list[str]:
    """Load the learned tokens (all, or ``tokens``) into a diffusers pipeline with
    ``pipe.load_textual_inversion`` and return the tokens loaded."""
    embeds = read_embeddings(path)
    wanted = list(embeds) if tokens is None else list(tokens)
    missing = [t for t in wanted if t not in embeds]
    if missing:
        raise TokenError(f"tokens {missing} not in {path} (it has {sorted(embeds)})")
    pipe.load_textual_inversion([{t: embeds[t]} for t in wanted])
    return wanted


def write_embeddings_into(text_encoder, class_tokens, embeds: dict[str, torch.Tensor]) -> None:
    """Copy saved ``{token: (N, D)}`` rows back into the text encoder (used when resuming)."""
    weight = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        for ct in class_tokens:
            if ct.token not in embeds:
                raise TokenError(f"checkpoint lacks the embedding of {ct.token}")
            value = embeds[ct.token]
            if value.shape != (len(ct.ids), weight.shape[1]):
                raise TokenError(f"checkpoint embedding of {ct.token} has shape {tuple(value.shape)}, "
                                 f"expected {(len(ct.ids), weight.shape[1])}")
            weight[ct.ids] = value.to(weight.dtype).to(weight.device)
