"""Class text embeddings: templates, in-memory and disk caches, precomputed files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_model import TINY_ARCH

from zegclip import MULTI_TEMPLATES, SINGLE_TEMPLATE, CLIPConfig
from zegclip.model import text as text_module
from zegclip.model.clip import create_clip
from zegclip.model.text import TextEncoder, load_text_embeddings, split_synonyms

NAMES = ["cat", "dog", "potted plant"]


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return create_clip(CLIPConfig(arch=TINY_ARCH))


@pytest.fixture()
def encoder(clip) -> TextEncoder:
    return TextEncoder(clip)


def count_tower_calls(monkeypatch, encoder: TextEncoder) -> list[int]:
    calls: list[int] = []
    original = encoder.encode_tokens

    def counting(tokens):
        calls.append(tokens.shape[0])
        return original(tokens)

    monkeypatch.setattr(encoder, "encode_tokens", counting)
    return calls


def test_templates():
    assert SINGLE_TEMPLATE == ("a photo of a {}",)  # VOC: no final period
    assert len(MULTI_TEMPLATES) == 15 and len(set(MULTI_TEMPLATES)) == 15
    assert MULTI_TEMPLATES[0] == "a photo of a {}." and MULTI_TEMPLATES[-1] == "This is one {} in the scene."


def test_single_template(encoder):
    emb = encoder.class_embeddings(NAMES)
    direct = encoder.encode_tokens(encoder.tokenize([f"a photo of a {n}" for n in NAMES]))
    assert emb.shape == (3, 32) and emb.dtype == torch.float32
    assert torch.allclose(emb, F.normalize(direct, dim=-1), atol=1e-6)
    assert torch.allclose(encoder.class_embeddings(NAMES, "single"), emb)
    custom = encoder.class_embeddings(NAMES, ["a drawing of a {}"])
    assert torch.allclose(
        custom,
        F.normalize(encoder.encode_tokens(encoder.tokenize([f"a drawing of a {n}" for n in NAMES])), dim=-1),
        atol=1e-6,
    )


def test_multi_template_ensemble(encoder):
    emb = encoder.class_embeddings(NAMES, "multi")
    per_template = torch.stack(
        [
            F.normalize(encoder.encode_tokens(encoder.tokenize([t.format(n) for n in NAMES])), dim=-1)
            for t in MULTI_TEMPLATES
        ]
    )  # (15, C, D), each prompt normalised
    expected = F.normalize(per_template.mean(0), dim=-1)
    assert emb.shape == (3, 32)
    assert torch.allclose(emb, expected, atol=1e-6)
    # normalising before averaging matters (raw features have different norms)
    raw = torch.stack(
        [encoder.encode_tokens(encoder.tokenize([t.format(n) for n in NAMES])) for t in MULTI_TEMPLATES]
    )
    assert not torch.allclose(emb, F.normalize(raw.mean(0), dim=-1), atol=1e-4)


def test_computed_once_in_memory(monkeypatch, encoder):
    calls = count_tower_calls(monkeypatch, encoder)
    first = encoder.class_embeddings(NAMES, "multi")
    assert calls == [45]  # 15 templates x 3 names, in one pass
    second = encoder.class_embeddings(NAMES, "multi")
    assert calls == [45] and torch.equal(first, second)
    encoder.class_embeddings(NAMES)  # another template set is another entry
    assert calls == [45, 3]
    encoder.clear_cache()
    encoder.class_embeddings(NAMES)
    assert calls == [45, 3, 3]


def test_no_autograd_in_text_embeddings(encoder):
    with torch.enable_grad():
        emb = encoder.class_embeddings(NAMES)
    assert not emb.requires_grad
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training


def test_disk_cache(monkeypatch, clip, tmp_path):
    first = TextEncoder(clip, cache_dir=tmp_path, cache_key="tiny")
    emb = first.class_embeddings(NAMES, "multi")
    files = sorted(tmp_path.glob("*.pt"))
    assert len(files) == 1
    assert torch.equal(torch.load(files[0], weights_only=True), emb)

    second = TextEncoder(clip, cache_dir=tmp_path, cache_key="tiny")
    calls = count_tower_calls(monkeypatch, second)
    assert torch.equal(second.class_embeddings(NAMES, "multi"), emb)
    assert calls == []  # read from the file, the tower did not run

    second.class_embeddings(NAMES[:2], "multi")  # other names: another file
    second.class_embeddings(NAMES, "single")  # other templates: another file
    assert calls == [30, 3]
    assert len(list(tmp_path.glob("*.pt"))) == 3
    assert not list(tmp_path.glob("*.tmp"))


def test_class_names_empty(encoder):
    with pytest.raises(ValueError, match="class_names is empty"):
        encoder.class_embeddings([])


def test_bad_templates(encoder):
    with pytest.raises(ValueError, match="templates must be"):
        encoder.class_embeddings(NAMES, ["no placeholder here"])


# ----------------------------------------------------------------------------- precomputed files


def official_like(c: int = 4, d: int = 8) -> np.ndarray:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((c, d)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb.astype(np.float16)  # normalised in fp32, stored in fp16: norms are no longer exactly 1


def test_load_npy_float16_upcast_exactly(tmp_path):
    emb = official_like()
    np.save(tmp_path / "voc.npy", emb)
    loaded = load_text_embeddings(tmp_path / "voc.npy", num_classes=4)
    assert loaded.dtype == torch.float32 and loaded.shape == (4, 8)
    assert torch.equal(loaded, torch.from_numpy(emb.astype(np.float32)))  # not re-normalised
    assert not torch.equal(loaded, F.normalize(loaded, dim=-1))


def test_load_pt(tmp_path):
    emb = torch.from_numpy(official_like()) * 3  # deliberately not unit norm
    torch.save(emb, tmp_path / "emb.pt")
    loaded = load_text_embeddings(tmp_path / "emb.pt")
    assert loaded.dtype == torch.float32 and torch.equal(loaded, emb.float())


def test_load_errors(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros(8, dtype=np.float16))
    with pytest.raises(ValueError, match=r"expected a \(C, D\) array of class embeddings, got shape \(8,\)"):
        load_text_embeddings(tmp_path / "flat.npy")
    np.save(tmp_path / "voc.npy", official_like())
    with pytest.raises(ValueError, match="holds 4 class embeddings, expected 20"):
        load_text_embeddings(tmp_path / "voc.npy", num_classes=20)
    torch.save({"emb": torch.zeros(4, 8)}, tmp_path / "dict.pt")
    with pytest.raises(ValueError, match="holds a dict"):
        load_text_embeddings(tmp_path / "dict.pt")
    torch.save(torch.zeros(2, 4, 8), tmp_path / "cube.pt")
    with pytest.raises(ValueError, match=r"got shape \(2, 4, 8\)"):
        load_text_embeddings(tmp_path / "cube.pt")
    with pytest.raises(FileNotFoundError, match="Text-embedding file not found"):
        load_text_embeddings(tmp_path / "missing.npy")


def test_disk_cache_not_shared_between_different_text_towers(tiny_config, tmp_path):
    from zegclip import ZegCLIP

    torch.manual_seed(0)
    first = ZegCLIP(tiny_config, text_cache_dir=str(tmp_path))
    torch.manual_seed(1)
    second = ZegCLIP(tiny_config, text_cache_dir=str(tmp_path))
    assert not torch.equal(
        first.text_encoder.token_embedding.weight, second.text_encoder.token_embedding.weight
    )
    emb_first = first.class_embeddings(NAMES)
    expected = F.normalize(
        second.text_encoder.encode_tokens(second.text_encoder.tokenize([f"a photo of a {n}" for n in NAMES])),
        dim=-1,
    )
    assert not torch.allclose(emb_first, expected, atol=1e-3)
    assert torch.allclose(second.class_embeddings(NAMES), expected, atol=1e-6)
    # new weights in the same model (load_state_dict): neither cache may serve the old embeddings
    first.load_state_dict(second.state_dict())
    assert torch.allclose(first.class_embeddings(NAMES), expected, atol=1e-6)
    assert len(list(tmp_path.glob("*.pt"))) == 2


# -- synonyms (CAT-Seg's vocabularies: "a, b" names one class) ---------------------------------------
SYNONYM_NAMES = ["sofa, couch, lounge", "cat", "rug, carpet"]


def normalized_prompts(encoder: TextEncoder, template: str, words: list[str]) -> torch.Tensor:
    return F.normalize(encoder.encode_tokens(encoder.tokenize([template.format(w) for w in words])), dim=-1)


def test_split_synonyms():
    assert split_synonyms("sofa, couch, lounge") == ["sofa", "couch", "lounge"]
    assert split_synonyms("chest of drawers, chest") == ["chest of drawers", "chest"]
    assert split_synonyms("cat") == ["cat"]


def test_synonyms_average_is_catseg_rule(encoder):
    """Per template: mean of the synonyms' normalised embeddings, renormalised; then the template mean."""
    emb = encoder.class_embeddings(SYNONYM_NAMES, "multi", synonyms="average")
    per_template = []
    for t in MULTI_TEMPLATES:
        rows = [
            F.normalize(normalized_prompts(encoder, t, split_synonyms(n)).mean(0), dim=-1)
            for n in SYNONYM_NAMES
        ]
        per_template.append(torch.stack(rows))
    expected = F.normalize(torch.stack(per_template).mean(0), dim=-1)
    assert emb.shape == (3, 32) and torch.allclose(emb, expected, atol=1e-6)
    # a name without synonyms gets exactly the embedding it has without the rule
    assert torch.allclose(emb[1], encoder.class_embeddings(["cat"], "multi")[0], atol=1e-7)
    # one template: the synonyms' average alone
    single = encoder.class_embeddings(SYNONYM_NAMES, synonyms="average")
    sofa = F.normalize(
        normalized_prompts(encoder, "a photo of a {}", ["sofa", "couch", "lounge"]).mean(0), dim=-1
    )
    assert torch.allclose(single[0], sofa, atol=1e-6)
    # the rule changes the embedding: not the whole string, not the first synonym
    whole = encoder.class_embeddings(SYNONYM_NAMES)
    first = encoder.class_embeddings(SYNONYM_NAMES, synonyms="first")
    assert not torch.allclose(single[0], whole[0], atol=1e-3) and not torch.allclose(
        single[0], first[0], atol=1e-3
    )
    assert torch.allclose(first[0], normalized_prompts(encoder, "a photo of a {}", ["sofa"])[0], atol=1e-6)
    assert torch.allclose(
        whole[0], normalized_prompts(encoder, "a photo of a {}", ["sofa, couch, lounge"])[0], atol=1e-6
    )


def test_synonym_rule_is_part_of_the_caches(monkeypatch, clip, tmp_path):
    encoder = TextEncoder(clip, cache_dir=tmp_path, cache_key="tiny")
    calls = count_tower_calls(monkeypatch, encoder)
    averaged = encoder.class_embeddings(SYNONYM_NAMES, synonyms="average")
    assert calls == [6]  # 3 + 1 + 2 synonyms, one pass
    encoder.class_embeddings(SYNONYM_NAMES, synonyms="average")
    encoder.class_embeddings(SYNONYM_NAMES)  # without the rule: another entry, another file
    assert calls == [6, 3] and len(list(tmp_path.glob("*.pt"))) == 2
    again = TextEncoder(clip, cache_dir=tmp_path, cache_key="tiny")
    calls = count_tower_calls(monkeypatch, again)
    assert torch.equal(again.class_embeddings(SYNONYM_NAMES, synonyms="average"), averaged) and calls == []
    with pytest.raises(
        ValueError, match=r"synonyms must be null or one of \['average', 'first'\], got 'mean'"
    ):
        encoder.class_embeddings(SYNONYM_NAMES, synonyms="mean")


def test_many_prompts_are_encoded_in_batches(monkeypatch, encoder):
    monkeypatch.setattr(text_module, "TEXT_BATCH", 4)
    calls = count_tower_calls(monkeypatch, encoder)
    names = [f"thing {i}" for i in range(10)]
    emb = encoder.class_embeddings(names)
    assert calls == [4, 4, 2]
    expected = normalized_prompts(encoder, "a photo of a {}", names)
    assert torch.allclose(emb, expected, atol=1e-6)
