"""Placeholder tokens: the tiny tokenizer, adding class tokens, and the textual-inversion files."""
import pytest
import torch
from transformers import CLIPTextModel, CLIPTokenizer

from cai.cdm.tiny import TINY_WORDS
from cai.cdm.tokens import (TokenError, add_class_tokens, embeds_filename, load_embeddings, placeholder_token,
                            read_embeddings, save_embeddings)


def _load(tiny_sd):
    return (CLIPTokenizer.from_pretrained(str(tiny_sd / "tokenizer")),
            CLIPTextModel.from_pretrained(str(tiny_sd / "text_encoder")))


def test_tiny_tokenizer_knows_its_words_as_single_tokens(tiny_sd):
    tokenizer, _ = _load(tiny_sd)
    assert len(tokenizer) > 100  # not the 2-token tokenizer a bad construction silently gives
    for word in TINY_WORDS:
        assert tokenizer.tokenize(word) == [word + "</w>"], word
    assert tokenizer.tokenize("a photo of crack") == ["a</w>", "photo</w>", "of</w>", "crack</w>"]
    ids = tokenizer("a photo", padding="max_length", max_length=tokenizer.model_max_length).input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[3] == tokenizer.eos_token_id and len(ids) == 32


def test_add_class_tokens_initialises_from_the_right_word(tiny_sd):
    tokenizer, text_encoder = _load(tiny_sd)
    n = len(tokenizer)
    weight_before = text_encoder.get_input_embeddings().weight.detach().clone()
    tokens = add_class_tokens(tokenizer, text_encoder, ["crack", "colour stain"], num_vectors=2)
    assert [t.token for t in tokens] == ["<crack>", "<colour-stain>"]
    assert tokens[1].vector_tokens == ["<colour-stain>", "<colour-stain>_1"]
    assert [t.init_token for t in tokens] == ["crack", "defect"]  # "colour stain" is not one token
    assert len(tokenizer) == n + 4
    weight = text_encoder.get_input_embeddings().weight
    assert weight.shape[0] == n + 4
    assert torch.equal(weight[:n], weight_before)
    crack_id = tokenizer.convert_tokens_to_ids("crack</w>")
    defect_id = tokenizer.convert_tokens_to_ids("defect</w>")
    for i in tokens[0].ids:
        assert torch.equal(weight[i], weight_before[crack_id])
    for i in tokens[1].ids:
        assert torch.equal(weight[i], weight_before[defect_id])
    assert tokenizer.tokenize("a photo of " + tokens[1].prompt_text) == ["a</w>", "photo</w>", "of</w>",
                                                                        "<colour-stain>", "<colour-stain>_1"]


def test_init_token_must_be_one_token_and_placeholders_new(tiny_sd):
    tokenizer, text_encoder = _load(tiny_sd)
    with pytest.raises(TokenError, match="not a single token"):
        add_class_tokens(tokenizer, text_encoder, ["crack"], init_token="crackstain")
    with pytest.raises(TokenError, match="already in"):
        add_class_tokens(tokenizer, text_encoder, ["crack"], placeholder_format="{}</w>")
    assert placeholder_token(" a b ") == "<a-b>"
    assert embeds_filename("a/b c") == "learned_embeds-a_b_c.safetensors"


def test_saved_files_are_in_textual_inversion_format(tiny_sd, tmp_path):
    tokenizer, text_encoder = _load(tiny_sd)
    tokens = add_class_tokens(tokenizer, text_encoder, ["crack", "stain"], num_vectors=3)
    files = save_embeddings(tmp_path, text_encoder, tokens)
    assert files == {"crack": "learned_embeds-crack.safetensors", "stain": "learned_embeds-stain.safetensors"}
    single = read_embeddings(tmp_path / files["stain"])
    assert list(single) == ["<stain>"] and single["<stain>"].shape == (3, 32)
    both = read_embeddings(tmp_path)
    assert sorted(both) == ["<crack>", "<stain>"]
    assert torch.equal(both["<stain>"], text_encoder.get_input_embeddings().weight[tokens[1].ids].detach())
    with pytest.raises(FileNotFoundError):
        read_embeddings(tmp_path / "nothing")


def test_load_embeddings_rejects_unknown_tokens(tiny_sd, tmp_path):
    tokenizer, text_encoder = _load(tiny_sd)
    tokens = add_class_tokens(tokenizer, text_encoder, ["crack"])
    save_embeddings(tmp_path, text_encoder, tokens)
    with pytest.raises(TokenError, match="not in"):
        load_embeddings(object(), tmp_path, ["<stain>"])


pytestmark = pytest.mark.slow  # tiny SD / mongod / accelerate launch: heavy, still run by default and in CI
